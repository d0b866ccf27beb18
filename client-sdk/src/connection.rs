//! WebSocket connections to a fieldsync server, attached to a node (the engine's task).
//!
//! [`dial`] opens one authenticated socket; [`run`] moves frames between it and the node until
//! it ends, pinging so that a server that vanished without a close is noticed. A [`Device`]
//! redials through its supervisor (`sync`); [`SyncClient`] is a single connection over its own
//! node, for tools and tests that want no more than that.
//!
//! [`Device`]: crate::Device

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use automerge::{Automerge, ChangeHash};
use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::protocol::SyncLimits;
use fieldsync_shared::sync::{EngineConfig, EngineRole, LocalEdit, LocalEditError};
use fieldsync_storage::Store;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};

use crate::events::{Event, SyncState};
use crate::node::{Hooks, Node, NodeConfig, Out, next_conn};
use crate::tls::ClientTls;

/// How often the client pings, and how long a silent server is given before the connection is
/// taken for dead.
const PING_EVERY: Duration = Duration::from_secs(15);
const SILENCE_LIMIT: Duration = Duration::from_secs(45);

/// Why a connection could not be made or ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The server answered the upgrade with an HTTP error: 401 for refused credentials
    /// (`code` is the server's stable code: `expired_token`, `revoked`, `forged_token`…),
    /// 503 when it is full.
    #[error("the server refused the connection ({status} {code}): {reason}")]
    Refused {
        status: u16,
        code: String,
        reason: String,
    },
    #[error("cannot connect: {0}")]
    Network(String),
    /// The TLS handshake failed: most often the server's certificate is not signed by a CA
    /// this client trusts (a wrong or missing CA file), does not name the host, or the port
    /// does not speak TLS. The text says which, and ends with rustls's own name for it
    /// (`invalid peer certificate: UnknownIssuer`). Also: the CA settings cannot be used.
    #[error("TLS: {0}")]
    Tls(String),
    #[error("bad server URL: {0}")]
    BadUrl(String),
}

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl ConnectError {
    /// Whether a [`SyncState::Disconnected`] reason is a [`ConnectError::Tls`]: a failure a
    /// retry will not cure until someone fixes a certificate or a CA file.
    pub fn is_tls_reason(reason: &str) -> bool {
        reason.starts_with("TLS: ")
    }
}

/// Opens a WebSocket to `url` (e.g. `ws://127.0.0.1:3030/sync`, or `wss://…` trusting `tls`)
/// with a bearer token.
pub(crate) async fn dial(
    url: &str,
    token: &str,
    max_frame_bytes: usize,
    tls: &ClientTls,
) -> Result<Socket, ConnectError> {
    let mut request = url
        .into_client_request()
        .map_err(|e| ConnectError::BadUrl(e.to_string()))?;
    let value = format!("Bearer {token}")
        .parse()
        .map_err(|_| ConnectError::BadUrl("token is not a valid header value".into()))?;
    request.headers_mut().insert("authorization", value);
    let config = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(max_frame_bytes))
        .max_frame_size(Some(max_frame_bytes));
    let connector = if crate::tls::wants_tls(url) {
        Some(
            tls.connector()
                .map_err(|e| ConnectError::Tls(e.to_string()))?,
        )
    } else {
        None
    };
    let (socket, _) =
        tokio_tungstenite::connect_async_tls_with_config(request, Some(config), false, connector)
            .await
            .map_err(|e| match e {
                tungstenite::Error::Http(response) => {
                    let body = response
                        .body()
                        .as_ref()
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .unwrap_or_default();
                    // The server's errors are JSON `{"code", "message"}` (server/src/error.rs).
                    let parsed: Option<serde_json::Value> = serde_json::from_str(&body).ok();
                    let field = |k: &str| {
                        parsed
                            .as_ref()
                            .and_then(|v| v[k].as_str())
                            .map(str::to_owned)
                    };
                    ConnectError::Refused {
                        status: response.status().as_u16(),
                        code: field("code").unwrap_or_default(),
                        reason: field("message").unwrap_or(body),
                    }
                }
                tungstenite::Error::Url(e) => ConnectError::BadUrl(e.to_string()),
                other => match tls.explain(&other) {
                    Some(reason) => ConnectError::Tls(reason),
                    None => ConnectError::Network(other.to_string()),
                },
            })?;
    Ok(socket)
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ended {
    pub code: Option<u16>,
    pub reason: String,
    /// Whether the handshake had completed (the server accepted us as a peer).
    pub joined: bool,
}

/// Runs one connection on `node` until the socket ends or `stop` resolves. `on_joined` runs
/// once the handshake completes.
pub(crate) async fn run(
    node: &Node,
    socket: Socket,
    stop: impl Future<Output = ()>,
    on_joined: impl FnOnce(),
) -> Ended {
    let conn = next_conn();
    let (outbox, mut outgoing) = mpsc::unbounded_channel();
    let (joined_tx, mut joined_rx) = oneshot::channel();
    let (mut sink, mut stream) = socket.split();
    if !node.attach(conn, outbox, joined_tx) {
        let _ = sink.send(WsMessage::Close(None)).await;
        return Ended {
            code: Some(1000),
            reason: "the device is closing".into(),
            joined: false,
        };
    }
    tokio::pin!(stop);
    let mut on_joined = Some(on_joined);
    let mut joined = false;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    let mut last_heard = tokio::time::Instant::now();
    let ended = loop {
        tokio::select! {
            incoming = stream.next() => match incoming {
                Some(Ok(WsMessage::Binary(bytes))) => {
                    last_heard = tokio::time::Instant::now();
                    node.frame(conn, bytes.to_vec());
                }
                Some(Ok(WsMessage::Close(frame))) => {
                    break Ended {
                        code: frame.as_ref().map(|f| u16::from(f.code)),
                        reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                        joined,
                    };
                }
                Some(Ok(_)) => last_heard = tokio::time::Instant::now(),
                Some(Err(e)) => break Ended { code: None, reason: e.to_string(), joined },
                None => break Ended { code: None, reason: "connection ended".into(), joined },
            },
            out = outgoing.recv() => match out {
                Some(Out::Frame(bytes)) => {
                    if let Err(e) = sink.send(WsMessage::Binary(bytes.into())).await {
                        break Ended { code: None, reason: e.to_string(), joined };
                    }
                }
                Some(Out::Close(code, reason)) => {
                    let _ = sink
                        .send(WsMessage::Close(Some(CloseFrame {
                            code: code.into(),
                            reason: reason.clone().into(),
                        })))
                        .await;
                    break Ended { code: Some(code), reason, joined };
                }
                None => break Ended { code: None, reason: "the device is closing".into(), joined },
            },
            result = &mut joined_rx, if !joined => {
                if result.is_ok() {
                    joined = true;
                    if let Some(f) = on_joined.take() {
                        f();
                    }
                } else {
                    // The node dropped the handshake notice: the connection is gone there.
                    joined = true;
                }
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > SILENCE_LIMIT {
                    let _ = sink.send(WsMessage::Close(None)).await;
                    break Ended { code: None, reason: "the server went silent".into(), joined };
                }
                if sink.send(WsMessage::Ping(Vec::new().into())).await.is_err() {
                    break Ended { code: None, reason: "cannot ping the server".into(), joined };
                }
            },
            _ = &mut stop => {
                let _ = sink
                    .send(WsMessage::Close(Some(CloseFrame {
                        code: 1000.into(),
                        reason: "closed by client".into(),
                    })))
                    .await;
                break Ended { code: Some(1000), reason: "closed by client".into(), joined };
            },
        }
    };
    node.detach(conn);
    ended
}

/// What happened on a [`SyncClient`]'s connection.
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

/// Options of a [`SyncClient`] connection.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The peer id to join as; a device joins as its device id (the server checks).
    pub peer_id: String,
    /// The id of the local store, so the server can resume sync state on reconnect.
    pub storage_id: Option<String>,
    /// Largest frame accepted from the server.
    pub max_frame_bytes: usize,
}

/// One connection and the engine behind it, over a local store: for tools and tests that sync
/// raw documents. A technician app uses [`crate::Device`], which reconnects and knows jobs.
#[derive(Debug, Clone)]
pub struct SyncClient {
    node: Node,
    stop: Arc<watch::Sender<bool>>,
    events: broadcast::Sender<ClientEvent>,
}

impl SyncClient {
    /// Dials `url` (e.g. `ws://127.0.0.1:3030/sync`) with `token` and starts syncing; a
    /// `wss://` server must have a certificate from the system's trust store.
    pub async fn connect(
        url: &str,
        token: &str,
        options: ConnectOptions,
        store: Arc<Store>,
    ) -> Result<Self, ConnectError> {
        Self::connect_with_tls(url, token, options, &ClientTls::system(), store).await
    }

    /// [`connect`](Self::connect), trusting the CAs of `tls` for a `wss://` URL (e.g. a
    /// branch's own CA: [`ClientTls::from_ca_file`]).
    pub async fn connect_with_tls(
        url: &str,
        token: &str,
        options: ConnectOptions,
        tls: &ClientTls,
        store: Arc<Store>,
    ) -> Result<Self, ConnectError> {
        let socket = dial(url, token, options.max_frame_bytes, tls).await?;
        let mut engine = EngineConfig::new(EngineRole::Client, options.peer_id);
        engine.storage_id = options.storage_id;
        engine.wire_limits.max_message_bytes = options.max_frame_bytes;
        engine.sync_limits = SyncLimits::for_message_bytes(options.max_frame_bytes);
        let hooks = Hooks::new();
        let node = Node::start(
            store,
            NodeConfig {
                engine,
                subscribe: Vec::new(),
                index: None,
                assigned: Default::default(),
                records: Default::default(),
                handoffs: Default::default(),
                observe_jobs: false,
                summaries: None,
            },
            Arc::clone(&hooks),
        );
        let (events, _) = broadcast::channel(1024);
        // Forward the node's document events in this type's terms.
        let mut node_events = hooks.events.subscribe();
        let forward = events.clone();
        tokio::spawn(async move {
            loop {
                let event = match node_events.recv().await {
                    Ok(Event::DocChanged { doc, .. }) => ClientEvent::DocChanged { doc },
                    Ok(Event::DocUnavailable { doc }) => ClientEvent::DocUnavailable { doc },
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                let _ = forward.send(event);
            }
        });
        let (stop, mut stopped) = watch::channel(false);
        let task_node = node.clone();
        let task_events = events.clone();
        tokio::spawn(async move {
            let joined_events = task_events.clone();
            let joined_hooks = Arc::clone(&task_node.hooks);
            let ended = run(
                &task_node,
                socket,
                async move {
                    let _ = stopped.wait_for(|s| *s).await;
                },
                move || {
                    joined_hooks.set_state(SyncState::Connected);
                    let _ = joined_events.send(ClientEvent::Joined);
                },
            )
            .await;
            task_node.hooks.set_state(SyncState::Offline);
            let _ = task_events.send(ClientEvent::Closed {
                code: ended.code,
                reason: ended.reason,
            });
        });
        Ok(Self {
            node,
            stop: Arc::new(stop),
            events,
        })
    }

    /// Keeps `doc` in sync with the server (loads it from the store first).
    pub fn subscribe(&self, doc: DocumentId) {
        self.node.subscribe(doc);
    }

    /// Applies a change locally; returns once it is durable in the local store.
    pub async fn edit(
        &self,
        doc: DocumentId,
        edit: LocalEdit,
    ) -> Result<Vec<ChangeHash>, LocalEditError> {
        self.node.edit(doc, edit).await
    }

    /// A copy of the document as it is now, if stored.
    pub async fn read(&self, doc: DocumentId) -> Option<Automerge> {
        self.node
            .read(doc, |view| view.doc.cloned())
            .await
            .flatten()
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
        let mut events = self.node.hooks.events.subscribe();
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

    /// Closes the connection; the local store stays usable through this client.
    pub fn close(&self) {
        self.stop.send_replace(true);
    }
}

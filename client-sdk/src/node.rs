//! The engine's home on a device: one task that owns the shared sync engine (client role) for
//! as long as the local store is open, whether or not a connection exists.
//!
//! Connections come and go ([`Node::attach`] hands the task a connection's outbox, frames
//! arrive as commands, [`Command::Detach`] ends it); local edits, reads and subscriptions work
//! the same with or without one. The task carries out the engine's effects against the store
//! (loads on the blocking pool, writes through the store's writer thread) and turns them into
//! [`Event`]s. It also keeps what a device wants to know beyond the engine: which heads the
//! server is known to hold for each document (so "unsynced local changes" survives restarts),
//! the assignment index and the jobs it lists, and report outcomes written by the server.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use automerge::{Automerge, ChangeHash, ReadDoc};
use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::job::ReportOutcome;
use fieldsync_shared::job::approvals::read_approvals;
use fieldsync_shared::job::doc::read_job;
use fieldsync_shared::job::index::read_index;
use fieldsync_shared::protocol::{self, Message};
use fieldsync_shared::sync::{
    AllowAll, ConnId, Effect, Engine, EngineConfig, Input, LocalEdit, LocalEditError, Principal,
    WriteId, WriteOp,
};
use fieldsync_shared::time::Timestamp;
use fieldsync_storage::Store;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::events::{Event, Origin, SyncState};
use crate::handoff::{HANDOFFS, Handoff};
use crate::summary::Summary;

/// The `meta` namespace of the per-document sync records.
const SYNCED: &str = "client_synced";
/// The `meta` namespace and keys of the device's own settings.
pub(crate) const DEVICE: &str = "device";
pub(crate) const INDEX: &str = "assignment_index";
/// The `meta` namespace of the app's own settings.
const APP: &str = "app";

/// What the server is known to hold of one document, persisted so that "unsynced local
/// changes" and "last synced" are right after a restart with no connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncRecord {
    /// Heads the server has acknowledged holding (everything before them is on its disk).
    pub heads: Vec<ChangeHash>,
    /// When the server last confirmed holding every local change of the document.
    pub synced_at: Option<Timestamp>,
}

#[derive(Serialize, Deserialize)]
struct StoredRecord {
    heads: Vec<String>,
    synced_at: Option<i64>,
}

impl SyncRecord {
    fn encode(&self) -> Vec<u8> {
        let stored = StoredRecord {
            heads: self.heads.iter().map(ChangeHash::to_string).collect(),
            synced_at: self.synced_at.map(Timestamp::as_millis),
        };
        serde_json::to_vec(&stored).unwrap_or_default()
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let stored: StoredRecord = serde_json::from_slice(bytes).ok()?;
        let heads = stored
            .heads
            .iter()
            .map(|h| h.parse::<ChangeHash>().ok())
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            heads,
            synced_at: stored.synced_at.map(Timestamp::from_millis),
        })
    }

    /// Whether `doc` holds changes the server is not known to hold.
    pub fn unsynced(&self, doc: &Automerge) -> bool {
        has_unsynced(doc, &self.heads)
    }
}

/// Whether `doc` holds changes that are not ancestors of `acked`.
pub(crate) fn has_unsynced(doc: &Automerge, acked: &[ChangeHash]) -> bool {
    let heads = doc.get_heads();
    if heads.iter().all(|h| acked.contains(h)) {
        return false;
    }
    let known: Vec<ChangeHash> = acked
        .iter()
        .filter(|h| doc.get_change_by_hash(h).is_some())
        .copied()
        .collect();
    !doc.get_changes_meta(&known).is_empty()
}

/// Reads every handover state in the store.
pub(crate) fn load_handoffs(store: &Store) -> HashMap<DocumentId, Handoff> {
    let entries = store.meta_entries(HANDOFFS).unwrap_or_default();
    entries
        .into_iter()
        .filter_map(|(k, v)| Some((k.parse().ok()?, Handoff::decode(&v)?)))
        .collect()
}

/// Reads every sync record in the store.
pub(crate) fn load_sync_records(store: &Store) -> HashMap<DocumentId, SyncRecord> {
    let entries = store.meta_entries(SYNCED).unwrap_or_default();
    entries
        .into_iter()
        .filter_map(|(k, v)| Some((k.parse().ok()?, SyncRecord::decode(&v)?)))
        .collect()
}

/// The wall clock.
pub fn now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Timestamp::from_millis(ms)
}

/// Where events and the sync state go; shared by the node task and the connection supervisor.
#[derive(Debug)]
pub(crate) struct Hooks {
    pub events: broadcast::Sender<Event>,
    pub state: watch::Sender<SyncState>,
    /// The number of the current sync supervisor; bumped when sync starts or stops.
    pub generation: std::sync::atomic::AtomicU64,
    /// Woken when a job with something to hand to the desk appears (see `handoff`).
    pub handoffs: tokio::sync::Notify,
    /// Woken when an attachment is captured (see `attachments`).
    pub attachments: tokio::sync::Notify,
}

impl Hooks {
    pub fn new() -> Arc<Self> {
        let (events, _) = broadcast::channel(4096);
        let (state, _) = watch::channel(SyncState::Offline);
        Arc::new(Self {
            events,
            state,
            generation: std::sync::atomic::AtomicU64::new(0),
            handoffs: tokio::sync::Notify::new(),
            attachments: tokio::sync::Notify::new(),
        })
    }

    pub fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }

    pub fn set_state(&self, state: SyncState) {
        let changed = self.state.send_if_modified(|current| {
            if *current == state {
                false
            } else {
                *current = state.clone();
                true
            }
        });
        if changed {
            self.emit(Event::Sync(state));
        }
    }
}

/// A document as a read sees it: from the engine if loaded, else from the store.
#[derive(Debug)]
pub(crate) struct DocView<'a> {
    pub doc: Option<&'a Automerge>,
    pub record: Option<&'a SyncRecord>,
    /// Set once the job was taken off this device's technician.
    pub handoff: Option<&'a Handoff>,
}

type ReadFn = Box<dyn FnOnce(DocView<'_>) + Send>;
type EditReply = oneshot::Sender<Result<Vec<ChangeHash>, LocalEditError>>;

/// What goes to a connection task.
#[derive(Debug)]
pub(crate) enum Out {
    Frame(Vec<u8>),
    Close(u16, String),
}

pub(crate) enum Command {
    Attach {
        conn: ConnId,
        outbox: mpsc::UnboundedSender<Out>,
        joined: oneshot::Sender<()>,
    },
    Frame {
        conn: ConnId,
        bytes: Vec<u8>,
    },
    Detach {
        conn: ConnId,
    },
    Subscribe(DocumentId),
    SetIndex(DocumentId),
    Edit {
        doc: DocumentId,
        edit: LocalEdit,
        reply: EditReply,
    },
    Read {
        doc: DocumentId,
        f: ReadFn,
    },
    Overview {
        reply: oneshot::Sender<Overview>,
    },
    /// The documents the job list shows (or only `only`), with their summaries.
    List {
        only: Option<DocumentId>,
        reply: oneshot::Sender<Listing>,
    },
    SetHandoff {
        job: DocumentId,
        handoff: Handoff,
    },
    /// Reads an app setting, after writing `set` if given.
    Setting {
        key: String,
        set: Option<String>,
        reply: oneshot::Sender<Result<Option<String>, String>>,
    },
    WriteDone {
        id: WriteId,
        result: Result<(), String>,
    },
    Loaded(Input),
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

/// How a node starts.
#[derive(Debug)]
pub(crate) struct NodeConfig {
    pub engine: EngineConfig,
    /// Documents to keep in sync from the start (every document of the store, on a device).
    pub subscribe: Vec<DocumentId>,
    /// The assignment index, if known, and the jobs it listed when the store was last open.
    pub index: Option<DocumentId>,
    pub assigned: BTreeSet<DocumentId>,
    pub records: HashMap<DocumentId, SyncRecord>,
    /// Jobs taken off the technician and what became of their local changes.
    pub handoffs: HashMap<DocumentId, Handoff>,
    /// Follow the index and watch job report outcomes (a device); off for plain clients.
    pub observe_jobs: bool,
    /// Keep a summary of every document, in memory and in the store with each write (a
    /// device, starting from the summaries its store holds); `None` for plain clients.
    pub summaries: Option<HashMap<DocumentId, Arc<Summary>>>,
}

/// What the node knows of the documents it keeps.
#[derive(Debug, Clone, Default)]
pub(crate) struct Overview {
    pub index: Option<DocumentId>,
    pub assigned: Vec<DocumentId>,
    pub docs: Vec<DocumentId>,
    /// Jobs taken off the technician, with what became of their local changes.
    pub handoffs: Vec<(DocumentId, Handoff)>,
}

/// One document of the job list as the node knows it.
#[derive(Debug, Clone)]
pub(crate) struct Listed {
    pub id: DocumentId,
    /// Its summary; `None` when the node has none (not stored, or a summary not kept).
    pub summary: Option<Arc<Summary>>,
    pub record: Option<SyncRecord>,
    pub handoff: Option<Handoff>,
}

/// The job list: the documents it shows, in order, and what the node knows of them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Listing {
    /// Whether the assignment index is known (then `docs` are the jobs it lists, else every
    /// document of the store).
    pub index_known: bool,
    pub docs: Vec<Listed>,
}

/// A handle on the node task.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    commands: mpsc::UnboundedSender<Command>,
    pub hooks: Arc<Hooks>,
}

/// Every ConnId a process hands out is distinct, so a late frame of an old connection can
/// never be taken for the new one's.
static NEXT_CONN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

pub(crate) fn next_conn() -> ConnId {
    ConnId(NEXT_CONN.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

impl Node {
    /// Starts the node task over `store`.
    pub fn start(store: Arc<Store>, config: NodeConfig, hooks: Arc<Hooks>) -> Self {
        let (commands, rx) = mpsc::unbounded_channel();
        let mut driver = Driver {
            engine: Engine::new(config.engine),
            store,
            commands: commands.downgrade(),
            hooks: Arc::clone(&hooks),
            edits: HashMap::new(),
            next_token: 0,
            started: tokio::time::Instant::now(),
            conns: HashMap::new(),
            records: config.records,
            handoffs: config.handoffs,
            index: config.index,
            assigned: config.assigned,
            reports: HashMap::new(),
            decided: HashMap::new(),
            observe_jobs: config.observe_jobs,
            docs: BTreeSet::new(),
            summaries: config.summaries,
        };
        for doc in config.subscribe {
            driver.subscribe(doc);
        }
        if let Some(index) = driver.index {
            driver.subscribe(index);
        }
        tokio::spawn(driver.run(rx));
        Self { commands, hooks }
    }

    fn send(&self, command: Command) -> bool {
        self.commands.send(command).is_ok()
    }

    /// Keeps `doc` in sync with the server whenever connected.
    pub fn subscribe(&self, doc: DocumentId) {
        self.send(Command::Subscribe(doc));
    }

    /// Follows this assignment index (and the jobs it lists).
    pub fn set_index(&self, doc: DocumentId) {
        self.send(Command::SetIndex(doc));
    }

    /// The index, the jobs it lists and every document kept in sync, as the node knows them.
    pub async fn overview(&self) -> Overview {
        let (reply, rx) = oneshot::channel();
        if !self.send(Command::Overview { reply }) {
            return Overview::default();
        }
        rx.await.unwrap_or_default()
    }

    /// The job list (or the one document `only`), with what the node knows of each.
    pub async fn list(&self, only: Option<DocumentId>) -> Listing {
        let (reply, rx) = oneshot::channel();
        if !self.send(Command::List { only, reply }) {
            return Listing::default();
        }
        rx.await.unwrap_or_default()
    }

    /// Records what became of a job's handover (and tells the app).
    pub fn set_handoff(&self, job: DocumentId, handoff: Handoff) {
        self.send(Command::SetHandoff { job, handoff });
    }

    /// Reads an app setting, writing `set` first (durably) if given.
    pub async fn setting(&self, key: &str, set: Option<String>) -> Result<Option<String>, String> {
        let (reply, rx) = oneshot::channel();
        let command = Command::Setting {
            key: key.to_owned(),
            set,
            reply,
        };
        if !self.send(command) {
            return Err("the device has been closed".into());
        }
        rx.await
            .unwrap_or_else(|_| Err("the device has been closed".into()))
    }

    /// Hands the node a new connection; `joined` fires once the handshake completed.
    pub fn attach(
        &self,
        conn: ConnId,
        outbox: mpsc::UnboundedSender<Out>,
        joined: oneshot::Sender<()>,
    ) -> bool {
        self.send(Command::Attach {
            conn,
            outbox,
            joined,
        })
    }

    pub fn frame(&self, conn: ConnId, bytes: Vec<u8>) {
        self.send(Command::Frame { conn, bytes });
    }

    pub fn detach(&self, conn: ConnId) {
        self.send(Command::Detach { conn });
    }

    /// Applies a change locally; returns once it is durable in the local store.
    pub async fn edit(
        &self,
        doc: DocumentId,
        edit: LocalEdit,
    ) -> Result<Vec<ChangeHash>, LocalEditError> {
        let stopped = || LocalEditError::Storage("the device has been closed".into());
        let (reply, rx) = oneshot::channel();
        if !self.send(Command::Edit { doc, edit, reply }) {
            return Err(stopped());
        }
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Runs `f` on the document as it is now (`None` inside if it is not stored).
    pub async fn read<T: Send + 'static>(
        &self,
        doc: DocumentId,
        f: impl FnOnce(DocView<'_>) -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        let f: ReadFn = Box::new(move |view| {
            let _ = tx.send(f(view));
        });
        if !self.send(Command::Read { doc, f }) {
            return None;
        }
        rx.await.ok()
    }

    /// Closes every connection, waits for queued writes to be committed and stops the task.
    pub async fn shutdown(&self) {
        let (reply, rx) = oneshot::channel();
        if self.send(Command::Shutdown { reply }) {
            let _ = rx.await;
        }
    }
}

struct ConnState {
    outbox: mpsc::UnboundedSender<Out>,
    joined: Option<oneshot::Sender<()>>,
    /// Documents whose sync status was already confirmed on this connection.
    confirmed: HashSet<DocumentId>,
}

struct Driver {
    engine: Engine,
    store: Arc<Store>,
    /// Weak, so the task ends once every handle is gone.
    commands: mpsc::WeakUnboundedSender<Command>,
    hooks: Arc<Hooks>,
    edits: HashMap<u64, EditReply>,
    next_token: u64,
    started: tokio::time::Instant,
    conns: HashMap<ConnId, ConnState>,
    records: HashMap<DocumentId, SyncRecord>,
    handoffs: HashMap<DocumentId, Handoff>,
    index: Option<DocumentId>,
    assigned: BTreeSet<DocumentId>,
    /// The last report outcome seen per job, to tell when the server wrote a new one.
    reports: HashMap<DocumentId, Option<ReportOutcome>>,
    /// The approval requests already seen decided per job, to tell a new decision.
    decided: HashMap<DocumentId, BTreeSet<String>>,
    observe_jobs: bool,
    /// Every document kept in sync.
    docs: BTreeSet<DocumentId>,
    /// The summary of every stored document as the engine holds it (see `summary`), when
    /// kept.
    summaries: Option<HashMap<DocumentId, Arc<Summary>>>,
}

/// The ids of the job's decided approval requests.
fn decided_ids(doc: &Automerge) -> BTreeSet<String> {
    read_approvals(doc)
        .map(|all| {
            all.into_iter()
                .filter(|a| a.decision.is_some())
                .map(|a| a.id)
                .collect()
        })
        .unwrap_or_default()
}

impl Driver {
    fn now(&self) -> i64 {
        i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shutdown = loop {
            tokio::select! {
                command = rx.recv() => match command {
                    Some(Command::Shutdown { reply }) => break Some(reply),
                    Some(command) => self.command(command),
                    None => break None,
                },
                _ = tick.tick() => self.feed(Input::Tick),
            }
        };
        for (_, conn) in self.conns.drain() {
            let _ = conn
                .outbox
                .send(Out::Close(1000, "the device is closing".into()));
        }
        // Every write already handed to the store is committed before the store is dropped;
        // dropping it joins the writer thread, so do that off the async workers.
        let store = self.store;
        let _ = tokio::task::spawn_blocking(move || {
            let _ = store.flush().wait();
            drop(store);
        })
        .await;
        if let Some(reply) = shutdown {
            let _ = reply.send(());
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Attach {
                conn,
                outbox,
                joined,
            } => {
                self.conns.insert(
                    conn,
                    ConnState {
                        outbox,
                        joined: Some(joined),
                        confirmed: HashSet::new(),
                    },
                );
                self.feed(Input::Connected {
                    conn,
                    principal: Principal::Server,
                });
            }
            Command::Frame { conn, bytes } => {
                // Which document the frame is about, to check afterwards what the server now
                // holds of it. The engine decodes the frame again; a device can afford it.
                let doc = match protocol::decode(&bytes, &self.engine.config().wire_limits) {
                    Ok(Message::Sync(m) | Message::Request(m)) => Some(m.document_id),
                    _ => None,
                };
                self.feed(Input::Frame { conn, bytes });
                if let Some(doc) = doc {
                    self.check_synced(conn, doc);
                }
            }
            Command::Detach { conn } => {
                self.conns.remove(&conn);
                self.feed(Input::Disconnected { conn });
            }
            Command::Subscribe(doc) => self.subscribe(doc),
            Command::SetIndex(doc) => {
                if self.index != Some(doc) {
                    self.index = Some(doc);
                    drop(
                        self.store
                            .put_meta(DEVICE, INDEX, doc.to_string().into_bytes()),
                    );
                    self.subscribe(doc);
                    self.refresh_index();
                }
            }
            Command::Edit { doc, edit, reply } => {
                let token = self.next_token;
                self.next_token += 1;
                self.edits.insert(token, reply);
                self.feed(Input::Edit { doc, edit, token });
            }
            Command::Read { doc, f } => self.read(doc, f),
            Command::Overview { reply } => {
                let _ = reply.send(Overview {
                    index: self.index,
                    assigned: self.assigned.iter().copied().collect(),
                    docs: self.docs.iter().copied().collect(),
                    handoffs: self
                        .handoffs
                        .iter()
                        .map(|(job, h)| (*job, h.clone()))
                        .collect(),
                });
            }
            Command::List { only, reply } => {
                let _ = reply.send(self.listing(only));
            }
            Command::SetHandoff { job, handoff } => self.set_handoff(job, handoff),
            Command::Setting { key, set, reply } => {
                let store = Arc::clone(&self.store);
                tokio::task::spawn_blocking(move || {
                    let result = (|| {
                        if let Some(value) = set {
                            store.put_meta(APP, &key, value.into_bytes()).wait()?;
                        }
                        let value = store.meta(APP, &key)?;
                        Ok(value.and_then(|v| String::from_utf8(v).ok()))
                    })()
                    .map_err(|e: fieldsync_storage::StorageError| e.to_string());
                    let _ = reply.send(result);
                });
            }
            Command::WriteDone { id, result } => self.feed(Input::WriteDone { id, result }),
            Command::Loaded(input) => {
                let (doc, is_doc) = match &input {
                    Input::DocLoaded { doc, .. } => (Some(*doc), true),
                    Input::SyncStateLoaded { doc, .. } => (Some(*doc), false),
                    _ => (None, false),
                };
                self.feed(input);
                if let Some(doc) = doc {
                    if is_doc {
                        self.check_summary(doc);
                        self.on_loaded(doc);
                    }
                    // Frames that arrived while the document or its sync state loaded were
                    // applied just now: record what they say the server holds here, since no
                    // further frame may come.
                    let conns: Vec<ConnId> = self.conns.keys().copied().collect();
                    for conn in conns {
                        self.check_synced(conn, doc);
                    }
                }
            }
            Command::Shutdown { .. } => {}
        }
    }

    fn subscribe(&mut self, doc: DocumentId) {
        if self.docs.insert(doc) {
            self.feed(Input::Subscribe { doc });
        }
    }

    fn read(&mut self, doc: DocumentId, f: ReadFn) {
        let record = self.records.get(&doc).cloned();
        let handoff = self.handoffs.get(&doc).cloned();
        if let Some(current) = self.engine.document(&doc) {
            f(DocView {
                doc: Some(current),
                record: record.as_ref(),
                handoff: handoff.as_ref(),
            });
            return;
        }
        // Not in memory: then everything of it is in the store (the engine evicts only
        // documents with no write in flight, and an edit returns only once stored).
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || {
            let loaded = store
                .load_doc(&doc.to_string())
                .ok()
                .flatten()
                .and_then(|chunks| fieldsync_shared::stored::load(&chunks).ok())
                .filter(|d| !d.get_heads().is_empty());
            f(DocView {
                doc: loaded.as_ref(),
                record: record.as_ref(),
                handoff: handoff.as_ref(),
            });
        });
    }

    /// Records a job's handover state (durably, not awaited: a lost record only means the
    /// handover is asked again, and the server answers the same) and tells the app.
    fn set_handoff(&mut self, job: DocumentId, handoff: Handoff) {
        drop(
            self.store
                .put_meta(HANDOFFS, &job.to_string(), handoff.encode()),
        );
        match &handoff {
            Handoff::Pending => self.hooks.handoffs.notify_one(),
            Handoff::HandedToDesk { changes, .. } => self.hooks.emit(Event::JobHandedOver {
                job,
                changes: *changes,
            }),
            Handoff::Refused { code, message } => self.hooks.emit(Event::HandoffRefused {
                job,
                code: code.clone(),
                message: message.clone(),
            }),
        }
        self.handoffs.insert(job, handoff);
    }

    fn sender(&self) -> Option<mpsc::UnboundedSender<Command>> {
        self.commands.upgrade()
    }

    fn feed(&mut self, input: Input) {
        let now = self.now();
        let effects = self.engine.handle(input, now, &AllowAll);
        let mut summaries = self.summarize(&effects);
        let mut edited: HashSet<DocumentId> = HashSet::new();
        for (i, effect) in effects.into_iter().enumerate() {
            match effect {
                Effect::Send { conn, bytes } => {
                    if let Some(c) = self.conns.get(&conn) {
                        let _ = c.outbox.send(Out::Frame(bytes));
                    }
                }
                Effect::Close { conn, code, reason } => {
                    if let Some(c) = self.conns.remove(&conn) {
                        let _ = c.outbox.send(Out::Close(code.as_u16(), reason));
                    }
                }
                Effect::LoadDoc { doc } => {
                    let store = Arc::clone(&self.store);
                    let tx = self.sender();
                    tokio::task::spawn_blocking(move || {
                        let chunks = store.load_doc(&doc.to_string()).map_err(|e| e.to_string());
                        if let Some(tx) = tx {
                            let _ = tx.send(Command::Loaded(Input::DocLoaded { doc, chunks }));
                        }
                    });
                }
                Effect::LoadSyncState { doc, storage_id } => {
                    let store = Arc::clone(&self.store);
                    let tx = self.sender();
                    tokio::task::spawn_blocking(move || {
                        let state = store
                            .sync_state(storage_id.as_str(), &doc.to_string())
                            .ok()
                            .flatten();
                        if let Some(tx) = tx {
                            let _ = tx.send(Command::Loaded(Input::SyncStateLoaded {
                                doc,
                                storage_id,
                                state,
                            }));
                        }
                    });
                }
                Effect::Write { id, op } => self.write(id, op, summaries.remove(&i)),
                Effect::DocChanged { doc, .. } => {
                    let origin = if edited.contains(&doc) {
                        Origin::Local
                    } else {
                        Origin::Remote
                    };
                    self.hooks.emit(Event::DocChanged { doc, origin });
                    if self.observe_jobs {
                        self.observe(doc);
                    }
                }
                Effect::EditDone { token, doc, result } => {
                    if result.is_ok() {
                        edited.insert(doc);
                    }
                    if let Some(reply) = self.edits.remove(&token) {
                        let _ = reply.send(result);
                    }
                }
                Effect::DocUnavailable { doc, .. } => {
                    self.hooks.emit(Event::DocUnavailable { doc });
                }
                // A device tracks what the server holds through `shared_heads` (below), and a
                // device engine never takes in documents from a peer.
                Effect::Delivered { .. } | Effect::NewDocument { .. } => {}
                Effect::Refused { reason, detail, .. } => {
                    tracing::info!(reason, detail, "sync refused");
                }
            }
        }
        let joined: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(conn, c)| c.joined.is_some() && self.engine.remote_peer_id(**conn).is_some())
            .map(|(conn, _)| *conn)
            .collect();
        for conn in joined {
            if let Some(tx) = self.conns.get_mut(&conn).and_then(|c| c.joined.take()) {
                let _ = tx.send(());
            }
        }
    }

    fn write(&mut self, id: WriteId, op: WriteOp, summary: Option<Vec<u8>>) {
        let tx = self.sender();
        let done = move |result: Result<(), String>| {
            if let Some(tx) = tx {
                let _ = tx.send(Command::WriteDone { id, result });
            }
        };
        self.store.perform_summarized(op, summary, done);
    }

    /// The summaries that go with `effects`' writes, by the write's place among them: for
    /// each document whose content they write, its summary as the engine now holds it, with
    /// the last of its writes (the engine holds what all of them store together; a kill
    /// between two leaves the first's chunk without a summary, which deletes the old one).
    fn summarize(&mut self, effects: &[Effect]) -> HashMap<usize, Vec<u8>> {
        let Some(summaries) = self.summaries.as_mut() else {
            return HashMap::new();
        };
        let mut last: HashMap<DocumentId, usize> = HashMap::new();
        for (i, effect) in effects.iter().enumerate() {
            if let Effect::Write {
                op: WriteOp::AppendChanges { doc, .. } | WriteOp::Compact { doc, .. },
                ..
            } = effect
            {
                last.insert(*doc, i);
            }
        }
        let mut out = HashMap::with_capacity(last.len());
        for (doc, i) in last {
            match self.engine.document(&doc) {
                Some(current) => {
                    let summary = Summary::of(current);
                    out.insert(i, summary.encode());
                    summaries.insert(doc, Arc::new(summary));
                }
                // Not held as it will be stored: no summary (the store drops the old one).
                None => {
                    summaries.remove(&doc);
                }
            }
        }
        out
    }

    /// A document was loaded: if the summary kept for it is missing or says other heads (a
    /// store from before summaries, a write that went without one), make it again from the
    /// document and store it. Edits that waited for the load carry their own.
    fn check_summary(&mut self, doc: DocumentId) {
        let Some(summaries) = self.summaries.as_mut() else {
            return;
        };
        let Some(current) = self.engine.document(&doc) else {
            return;
        };
        if current.get_heads().is_empty() {
            return;
        }
        let kept = summaries
            .get(&doc)
            .is_some_and(|s| s.heads == current.get_heads());
        if kept {
            return;
        }
        let summary = Summary::of(current);
        drop(
            self.store
                .put_doc_summary(&doc.to_string(), summary.encode()),
        );
        summaries.insert(doc, Arc::new(summary));
    }

    /// The job list: the jobs the index lists (every stored document while it is unknown),
    /// then those taken off the technician that it no longer lists.
    fn listing(&self, only: Option<DocumentId>) -> Listing {
        let mut ids: Vec<DocumentId> = match (only, self.index) {
            (Some(doc), _) => vec![doc],
            (None, Some(_)) => self.assigned.iter().copied().collect(),
            (None, None) => self.docs.iter().copied().collect(),
        };
        if only.is_none() {
            let mut taken_off: Vec<DocumentId> = self
                .handoffs
                .keys()
                .filter(|job| !ids.contains(job))
                .copied()
                .collect();
            taken_off.sort();
            ids.extend(taken_off);
        }
        let docs = ids
            .into_iter()
            .map(|id| Listed {
                id,
                summary: self.summaries.as_ref().and_then(|s| s.get(&id)).cloned(),
                record: self.records.get(&id).cloned(),
                handoff: self.handoffs.get(&id).cloned(),
            })
            .collect();
        Listing {
            index_known: self.index.is_some(),
            docs,
        }
    }

    /// After a frame about `doc`: records what the server now holds of it, and when it holds
    /// every local change, when that was.
    fn check_synced(&mut self, conn: ConnId, doc: DocumentId) {
        let Some(shared) = self.engine.shared_heads(conn, &doc) else {
            return;
        };
        let Some(current) = self.engine.document(&doc) else {
            return;
        };
        if current.get_heads().is_empty() {
            return;
        }
        let record = self.records.entry(doc).or_default();
        let heads_moved = record.heads.as_slice() != shared;
        let first_on_conn = self
            .conns
            .get(&conn)
            .is_some_and(|c| !c.confirmed.contains(&doc));
        if !heads_moved && !first_on_conn {
            return;
        }
        let synced = !has_unsynced(current, shared);
        if heads_moved {
            record.heads = shared.to_vec();
        }
        if synced {
            record.synced_at = Some(now());
            if let Some(c) = self.conns.get_mut(&conn) {
                c.confirmed.insert(doc);
            }
        }
        if heads_moved || synced {
            // Not awaited: losing this record costs only a stale "unsynced" until the next
            // exchange, never data.
            drop(
                self.store
                    .put_meta(SYNCED, &doc.to_string(), record.encode()),
            );
        }
        if synced {
            self.hooks.emit(Event::Synced { doc });
        }
    }

    /// A document finished loading: remember its report outcome, so a new one can be told.
    fn on_loaded(&mut self, doc: DocumentId) {
        if !self.observe_jobs {
            return;
        }
        if Some(doc) == self.index {
            self.refresh_index();
        } else if let Some(current) = self.engine.document(&doc)
            && let Ok(job) = read_job(current)
        {
            self.reports.entry(doc).or_insert(job.report);
            let decided = decided_ids(current);
            self.decided.entry(doc).or_insert(decided);
        }
    }

    /// A document changed durably: follow the index, or look for a new report outcome.
    fn observe(&mut self, doc: DocumentId) {
        if Some(doc) == self.index {
            self.refresh_index();
            return;
        }
        let Some(current) = self.engine.document(&doc) else {
            return;
        };
        let Ok(job) = read_job(current) else {
            return;
        };
        self.observe_approvals(doc);
        let previous = self.reports.insert(doc, job.report.clone());
        if previous.as_ref() == Some(&job.report) {
            return;
        }
        match job.report {
            Some(ReportOutcome::Signed { report_id, .. }) => {
                self.hooks.emit(Event::ReportSigned {
                    job: doc,
                    report_id,
                });
            }
            Some(ReportOutcome::Refused { reasons, .. }) => {
                self.hooks.emit(Event::ReportRefused { job: doc, reasons });
            }
            None => {}
        }
    }

    /// Emits [`Event::ApprovalDecided`] for each request of the job decided since last seen.
    fn observe_approvals(&mut self, doc: DocumentId) {
        let Some(current) = self.engine.document(&doc) else {
            return;
        };
        let Ok(approvals) = read_approvals(current) else {
            return;
        };
        let seen = self.decided.entry(doc).or_default();
        for approval in approvals {
            let Some(decision) = approval.decision else {
                continue;
            };
            if seen.insert(approval.id.clone()) {
                self.hooks.emit(Event::ApprovalDecided {
                    job: doc,
                    approval: approval.id,
                    kind: approval.kind,
                    approved: decision.approved,
                    by: decision.by,
                    note: decision.note,
                });
            }
        }
    }

    /// Re-reads the index: subscribes to newly listed jobs and reports the difference.
    fn refresh_index(&mut self) {
        let Some(index) = self.index else {
            return;
        };
        let Some(current) = self.engine.document(&index) else {
            return;
        };
        let listed: BTreeSet<DocumentId> = match read_index(current) {
            Ok(idx) => idx
                .jobs
                .iter()
                .filter_map(|u| DocumentId::from_url(u).ok())
                .collect(),
            Err(e) => {
                if !current.get_heads().is_empty() {
                    tracing::warn!(error = %e, "the assignment index cannot be read");
                }
                return;
            }
        };
        let added: Vec<DocumentId> = listed.difference(&self.assigned).copied().collect();
        let removed: Vec<DocumentId> = self.assigned.difference(&listed).copied().collect();
        self.assigned = listed;
        for job in added {
            // Assigned again: its changes sync as they are.
            if self.handoffs.remove(&job).is_some() {
                drop(self.store.delete_meta(HANDOFFS, &job.to_string()));
            }
            self.subscribe(job);
            self.hooks.emit(Event::JobAssigned { job });
        }
        for job in removed {
            self.hooks.emit(Event::JobUnassigned { job });
            // Whatever the server never received of it goes to the desk, not nowhere.
            if !self.handoffs.contains_key(&job) {
                self.set_handoff(job, Handoff::Pending);
            }
        }
    }
}

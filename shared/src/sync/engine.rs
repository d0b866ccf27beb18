//! The engine: one state machine for all connections and documents of a node.
//!
//! Invariants (ARCHITECTURE.md repeats them):
//! - Work per input is proportional to what the input touches: a frame touches one document
//!   and its sessions, a disconnect touches that peer's sessions, a tick touches the documents
//!   whose idle time is up. Nothing walks every document × every peer.
//! - Durability barrier: while a document has writes in flight, no sync message for it is
//!   generated, so no peer is ever told the node holds a change before it is stored.
//! - A request for a forbidden or unknown document loads nothing and holds nothing.
//! - Peer input is checked (`protocol::check_sync_message`) before automerge sees it, and any
//!   panic left inside automerge is caught at the session: it closes that one connection.
//! - A session whose writes a table restricts (`authority`) hands automerge only changes
//!   checked op by op against it (`admit`); a forbidden op refuses the whole message, and
//!   nothing of it is applied or stored.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::ops::Bound;
use std::panic::{AssertUnwindSafe, catch_unwind};

use automerge::sync::{self, SyncDoc};
use automerge::{Automerge, ChangeHash, ReadDoc};

use super::access::{Access, AccessPolicy, Principal, WriteScope};
use super::admit::{self, Gated, Refusal, Waiting};
use super::quiet;
use crate::ids::DocumentId;
use crate::protocol::message::{
    DocUnavailableMessage, EphemeralMessage, ErrorMessage, JoinMessage, PeerId, PeerMessage,
    PeerMetadata, SessionId, StorageId, SyncMessage,
};
use crate::protocol::{self, DecodeError, Message, SyncLimits};
use crate::stored::LoadStrategy;

/// Most idle documents saved for sleeping per tick, and most bytes: each is a `save` on the
/// engine's thread, whose cost grows with the document (about 0.1 ms for a fresh job, a few
/// ms for one of 2,000 changes, which is then found too big to sleep). A burst of documents
/// going idle together sleeps over a few ticks instead of stalling the engine.
const SLEEPS_PER_TICK: usize = 256;
const SLEEP_BYTES_PER_TICK: usize = 1024 * 1024;

/// What automerge holds in memory for a loaded document, estimated from its counts (issue 17,
/// `EngineConfig::max_document_memory`). Measured with a counting allocator: about 15 KB for
/// an empty document's op set and indexes; 10 to 40 bytes per operation; about 200 bytes per
/// change for a document loaded from its saved bytes, up to 330 for one that received its
/// changes in batches, as a server's do from sync messages (automerge's vectors keep their
/// spare capacity). A fresh job counts 21 KB (18 KB measured); a job of the benchmark's
/// history with 2,000 changes 0.9 MB (the server's heap: 0.86 MB a job). The saved size says
/// little: 5,000 one-field changes save to 13 KB and hold 1 to 1.5 MB.
pub fn memory_estimate(doc: &Automerge) -> usize {
    const EMPTY: usize = 16 * 1024;
    const PER_CHANGE: usize = 384;
    const PER_OP: usize = 24;
    let stats = doc.stats();
    let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    EMPTY
        .saturating_add(count(stats.num_changes).saturating_mul(PER_CHANGE))
        .saturating_add(count(stats.num_ops).saturating_mul(PER_OP))
}

/// What a dormant document's entry costs beside its saved bytes (the map slot and the box).
const DORMANT_OVERHEAD: usize = 128;

/// A connection, numbered by the glue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// A storage write, numbered by the engine; the glue reports its completion with this id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WriteId(pub u64);

/// Which side of the protocol this engine plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineRole {
    /// Answers `join` with `peer`; never offers documents nobody asked for.
    Server,
    /// Sends `join` on connect and syncs its subscribed documents with the server.
    Client,
}

/// WebSocket close codes the engine asks for (RFC 6455 §7.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    Normal = 1000,
    GoingAway = 1001,
    Protocol = 1002,
    Policy = 1008,
    TooBig = 1009,
    Internal = 1011,
}

impl CloseCode {
    pub fn as_u16(self) -> u16 {
        self as u16
    }
}

/// The engine's settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub role: EngineRole,
    /// Our peer id, sent in `peer` / `join`.
    pub peer_id: String,
    /// Our storage id, announced so peers can keep sync state with us across reconnects.
    pub storage_id: Option<String>,
    pub wire_limits: protocol::Limits,
    pub sync_limits: SyncLimits,
    /// A document without sessions is evicted from memory after this long.
    pub document_idle_ms: i64,
    /// A document without sessions keeps only its saved bytes after this long, and is loaded
    /// from them again when a peer or an edit needs it (issue 17: an idle job costs its
    /// ~1.3 KB of saved bytes instead of automerge's ~18 KB op set). `None`: never (a
    /// device, whose glue reads documents it holds through [`Engine::document`]).
    pub document_dormant_ms: Option<i64>,
    /// Only a document whose saved bytes are at most this big sleeps: loading one back costs
    /// about 0.15 ms for a fresh job (1.3 KB) but about 4 ms for one with 2,000 changes, so a
    /// device reconnecting with 200 such jobs would wait 0.8 s for what it had at once
    /// before; a big document stays awake until evicted, as before dormancy.
    pub dormant_max_bytes: usize,
    /// Most documents held in memory; past it idle ones are evicted first, then loads refused.
    pub max_loaded_documents: usize,
    /// Most memory the documents held may take, by [`memory_estimate`] for an awake one and
    /// its saved bytes for a dormant one (issue 17: a count cannot bound memory, since a job
    /// of 2,000 changes holds 50 times what a fresh one does). Past it, idle documents are
    /// evicted, oldest first, at once and at every tick; while documents in use still take it
    /// all, loads are refused. `None`: no budget (a device).
    pub max_document_memory: Option<usize>,
    /// After this many incremental chunks a document is compacted into one snapshot.
    pub compact_after_chunks: usize,
    /// How a document's stored chunks are loaded (one `load` unless a benchmark asks for the
    /// old chunk-by-chunk loader as its baseline).
    pub load: LoadStrategy,
    /// Server role: a document a peer with read-write access sends that is stored nowhere
    /// here is taken in (head office receiving a branch's documents) and announced with
    /// [`Effect::NewDocument`]. Off at the edge, where only the server creates documents.
    pub accept_new_documents: bool,
    /// Which of the hub's shards this engine is (`sync::shards`): it owns the documents that
    /// hash to it, numbers its writes `index, index + count, …` so a completion finds its way
    /// back, and, unless it is the home shard (0), stays silent on what every shard hears
    /// about a connection (the handshake, a kick), which the home shard answers once.
    pub shard: Shard,
}

impl EngineConfig {
    pub fn new(role: EngineRole, peer_id: impl Into<String>) -> Self {
        Self {
            role,
            peer_id: peer_id.into(),
            storage_id: None,
            wire_limits: protocol::Limits::default(),
            sync_limits: SyncLimits::default(),
            document_idle_ms: 300_000,
            document_dormant_ms: None,
            dormant_max_bytes: 16 * 1024,
            // The server's default (`limits.max_loaded_documents`, issue 17: within 2 GiB).
            max_loaded_documents: 20_000,
            max_document_memory: None,
            compact_after_chunks: 64,
            load: LoadStrategy::Concatenated,
            accept_new_documents: false,
            shard: Shard::ONE,
        }
    }
}

/// A change to apply to a document held by the engine.
pub type EditFn = Box<dyn FnOnce(&mut Automerge) -> Result<(), String> + Send>;

/// A change the node makes itself (the desk creating a job, the server writing an outcome).
pub enum LocalEdit {
    /// A new document with this content; refused if the id is already stored.
    Create(Box<Automerge>),
    /// A change to an existing document; refused if the id is not stored.
    Change(EditFn),
}

impl LocalEdit {
    /// A typed edit of a job document (see `job::doc::JobDoc`), as the engine applies it.
    pub fn job(
        f: impl FnOnce(&mut crate::job::doc::JobDoc) -> Result<(), crate::job::doc::EditError>
        + Send
        + 'static,
    ) -> Self {
        LocalEdit::Change(Box::new(move |doc: &mut Automerge| {
            edit_via_autocommit(doc, |ac| {
                let mut job = crate::job::doc::JobDoc::from_autocommit(std::mem::take(ac));
                let result = f(&mut job).map_err(|e| e.to_string());
                *ac = job.into_inner();
                result
            })
        }))
    }

    /// A typed edit of an assignment index document (see `job::index::IndexDoc`).
    pub fn index(
        f: impl FnOnce(&mut crate::job::index::IndexDoc) -> Result<bool, crate::job::doc::EditError>
        + Send
        + 'static,
    ) -> Self {
        LocalEdit::Change(Box::new(move |doc: &mut Automerge| {
            edit_via_autocommit(doc, |ac| {
                let mut index = crate::job::index::IndexDoc::from_autocommit(std::mem::take(ac));
                let result = f(&mut index).map(|_| ()).map_err(|e| e.to_string());
                *ac = index.into_inner();
                result
            })
        }))
    }
}

/// Applies an edit written against `AutoCommit` (the typed document wrappers) to an
/// engine-held `Automerge`: the edit runs on a copy and only its new changes are merged back.
/// The copy costs a save and a load of the document, which is fine for the occasional edit a
/// person makes; bulk ingest goes through sync messages instead.
pub fn edit_via_autocommit(
    doc: &mut Automerge,
    f: impl FnOnce(&mut automerge::AutoCommit) -> Result<(), String>,
) -> Result<(), String> {
    let heads = doc.get_heads();
    let mut copy = automerge::AutoCommit::load(&doc.save()).map_err(|e| e.to_string())?;
    f(&mut copy)?;
    let new = copy.save_after(&heads);
    doc.load_incremental(&new).map_err(|e| e.to_string())?;
    Ok(())
}

impl fmt::Debug for LocalEdit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LocalEdit::Create(_) => f.write_str("LocalEdit::Create"),
            LocalEdit::Change(_) => f.write_str("LocalEdit::Change"),
        }
    }
}

/// Why a local edit did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalEditError {
    #[error("document {0} already exists")]
    Exists(DocumentId),
    #[error("document {0} does not exist")]
    NotFound(DocumentId),
    #[error("the edit failed: {0}")]
    Failed(String),
    #[error("storing the edit failed: {0}")]
    Storage(String),
    #[error("the server is busy: {0}; try again later")]
    Busy(String),
}

/// What happened, as the engine is told it.
#[derive(Debug)]
pub enum Input {
    /// A connection was authenticated as `principal`. A client engine sends `join` now.
    Connected { conn: ConnId, principal: Principal },
    /// A connection this node opened to a server (a branch's link to head office): the
    /// engine plays the client on it whatever its role, sends `join`, and syncs the
    /// subscribed documents over it. `principal` is who the glue dialled.
    Dialed { conn: ConnId, principal: Principal },
    /// One WebSocket binary message.
    Frame { conn: ConnId, bytes: Vec<u8> },
    /// One WebSocket binary message the glue already decoded (with the engine's wire limits)
    /// to route it to its document's shard (`sync::shards::Router`); `size` is its length.
    Message {
        conn: ConnId,
        message: Message,
        size: usize,
    },
    /// The connection is gone (closed, failed, or closed by us).
    Disconnected { conn: ConnId },
    /// The answer to [`Effect::LoadDoc`]: every stored chunk, or `None` if nothing is stored.
    DocLoaded {
        doc: DocumentId,
        chunks: Result<Option<Vec<Vec<u8>>>, String>,
    },
    /// The answer to [`Effect::LoadSyncState`].
    SyncStateLoaded {
        doc: DocumentId,
        storage_id: StorageId,
        state: Option<Vec<u8>>,
    },
    /// The answer to [`Effect::Write`]: only `Ok` means the bytes are durable.
    WriteDone {
        id: WriteId,
        result: Result<(), String>,
    },
    /// A change of the node's own; answered with [`Effect::EditDone`] once durable.
    Edit {
        doc: DocumentId,
        edit: LocalEdit,
        token: u64,
    },
    /// Keep this document in sync with every server this node is connected to as a client
    /// (every connection of a client engine; the dialled ones of a server engine).
    Subscribe { doc: DocumentId },
    /// Stop offering the document to the servers it was subscribed for.
    Unsubscribe { doc: DocumentId },
    /// Access rules changed for a document or a principal: re-check the live sessions.
    AccessChanged {
        doc: Option<DocumentId>,
        principal: Option<Principal>,
    },
    /// Close every connection of `principal` (a revoked device).
    Kick {
        principal: Principal,
        reason: String,
    },
    /// Time passed: evict idle documents.
    Tick,
}

/// What the glue must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Send {
        conn: ConnId,
        bytes: Vec<u8>,
    },
    /// Send a close frame with this code and reason, then drop the connection.
    Close {
        conn: ConnId,
        code: CloseCode,
        reason: String,
    },
    LoadDoc {
        doc: DocumentId,
    },
    LoadSyncState {
        doc: DocumentId,
        storage_id: StorageId,
    },
    /// A storage write. Writes must be applied in the order they are emitted.
    Write {
        id: WriteId,
        op: WriteOp,
    },
    /// New content of a document is durable (the heads after it).
    DocChanged {
        doc: DocumentId,
        heads: Vec<ChangeHash>,
    },
    /// A server this node dialled holds every change of the document this node holds:
    /// its answer named them all as its heads, and a server announces only stored heads.
    /// Emitted when the heads it confirms change. `heads` are the document's heads then.
    Delivered {
        conn: ConnId,
        doc: DocumentId,
        heads: Vec<ChangeHash>,
    },
    /// A peer sent a document stored nowhere here and it was taken in
    /// ([`EngineConfig::accept_new_documents`]); `by` is that peer's principal.
    NewDocument {
        doc: DocumentId,
        by: Principal,
    },
    /// The answer to [`Input::Edit`].
    EditDone {
        token: u64,
        doc: DocumentId,
        result: Result<Vec<ChangeHash>, LocalEditError>,
    },
    /// A server answered `doc-unavailable` (client role).
    DocUnavailable {
        conn: ConnId,
        doc: DocumentId,
    },
    /// Something worth a log line and a metric: a refusal, with its reason code.
    Refused {
        conn: Option<ConnId>,
        reason: &'static str,
        detail: String,
    },
}

/// A storage write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// Append an incremental chunk (for `Automerge::load_incremental`).
    AppendChanges { doc: DocumentId, bytes: Vec<u8> },
    /// Replace every chunk stored so far for the document with this snapshot. Writes are
    /// applied in order, so the snapshot covers every chunk written before it.
    Compact { doc: DocumentId, snapshot: Vec<u8> },
    /// Remember the sync state with a peer's storage for next time.
    PutSyncState {
        doc: DocumentId,
        storage_id: StorageId,
        state: Vec<u8>,
    },
}

/// Counters for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub frames_in: u64,
    pub bytes_in: u64,
    pub frames_out: u64,
    pub bytes_out: u64,
    pub changes_applied_batches: u64,
    pub writes_issued: u64,
    pub docs_loaded_total: u64,
    pub docs_evicted_total: u64,
    /// Idle documents reduced to their saved bytes (`document_dormant_ms`), and those loaded
    /// from them again.
    pub docs_slept_total: u64,
    pub docs_woken_total: u64,
    pub panics_caught: u64,
    /// Changes held on a restricted session until their dependencies arrived.
    pub changes_held: u64,
}

#[derive(Debug, PartialEq, Eq)]
enum DocStatus {
    Loading,
    Ready,
    /// A write failed: the content is dropped, and the writes still in flight finish before
    /// the document is loaded again. Sessions and edits wait as they do while loading.
    Draining,
}

/// A document idle for `document_dormant_ms` (issue 17): its saved bytes only, kept out of
/// the engine's `docs`, so no path reads it by mistake; [`Engine::ensure_doc`] loads it back.
/// Only a document with no session, no write in flight and no waiting edit sleeps.
struct Dormant {
    /// `Automerge::save` of the document.
    saved: Box<[u8]>,
    /// When it became idle: its entry in the idle queue, which still evicts it.
    idle_since: i64,
    /// Chunks stored for it (the compaction count carries over).
    chunks: usize,
}

impl Dormant {
    /// What it counts for in `Engine::memory`.
    fn memory(&self) -> usize {
        self.saved.len() + DORMANT_OVERHEAD
    }
}

struct DocState {
    status: DocStatus,
    doc: Automerge,
    sessions: BTreeSet<ConnId>,
    /// Writes emitted and not yet done: while non-zero, nothing is announced (the barrier).
    unstored: u32,
    /// Content changed since the last announcement.
    dirty: bool,
    /// Incremental chunks stored since the last snapshot.
    chunks: usize,
    /// When the last session ended (for eviction).
    idle_since: Option<i64>,
    /// The last content write emitted, which completes after every earlier one.
    last_write: Option<WriteId>,
    /// Edits waiting for the load to finish.
    waiting_edits: Vec<(LocalEdit, u64)>,
    /// Edits whose write is in flight, with the heads right after each edit: answered with
    /// those heads when the write is done. Not the document's heads at that moment: they may
    /// include changes whose writes are still in flight.
    edits_in_flight: Vec<(WriteId, u64, Vec<ChangeHash>)>,
    /// `memory_estimate` of `doc` when last measured: what it counts for in `Engine::memory`.
    memory: usize,
}

impl DocState {
    fn new(status: DocStatus, idle_since: Option<i64>) -> Box<Self> {
        Box::new(DocState {
            status,
            doc: Automerge::new(),
            sessions: BTreeSet::new(),
            unstored: 0,
            dirty: false,
            chunks: 0,
            last_write: None,
            idle_since,
            waiting_edits: Vec::new(),
            edits_in_flight: Vec::new(),
            memory: 0,
        })
    }

    /// Whether the document can keep only its saved bytes: idle since `since` (the entry of
    /// the idle queue looked at), everything stored, nothing waiting, and not empty.
    fn can_sleep(&self, since: i64) -> bool {
        self.status == DocStatus::Ready
            && self.idle_since == Some(since)
            && self.sessions.is_empty()
            && self.unstored == 0
            && self.waiting_edits.is_empty()
            && self.edits_in_flight.is_empty()
            && !self.doc.get_heads().is_empty()
    }
}

/// A sync message waiting to be applied, with what `protocol::check_sync_message` found it
/// carries (change hashes and document heads).
struct Inbound {
    message: sync::Message,
    carried: Vec<ChangeHash>,
}

struct Session {
    state: sync::State,
    access: Access,
    /// The paths the peer's changes may touch.
    scope: WriteScope,
    /// Restricted sessions: changes held until their dependencies arrive, changes refused.
    waiting: Waiting,
    /// False until the persisted sync state is loaded.
    ready: bool,
    /// Messages received before the document or the sync state was ready.
    inbox: VecDeque<Inbound>,
    /// Client role: nothing sent yet on this session.
    fresh: bool,
    /// A message was received and not answered yet. A message without changes leaves the
    /// document as it was, yet may ask for something (`need`, a bloom filter after a
    /// reconnect): it must be answered even though nothing new is announced.
    reply_due: bool,
    /// Dialled connections: the heads last reported with [`Effect::Delivered`].
    delivered: Vec<ChangeHash>,
    /// The heads of the last sync message really sent on this session (see `announce`).
    sent_heads: Option<Vec<ChangeHash>>,
}

/// A fresh sync state for a session with this access.
///
/// A read-only session uses automerge's read-only sync state: it never asks the peer for the
/// changes it will not take, tells the peer not to send them (the READ_ONLY flag), and has
/// nothing to answer once the peer is up to date. With a plain state, every answer to a
/// peer's refused change asked for that change again, and the peer resent it: an endless
/// exchange, thousands of messages a second.
fn sync_state_for(access: Access) -> sync::State {
    if access == Access::Read {
        sync::State::new_read_only()
    } else {
        sync::State::new()
    }
}

impl Session {
    fn set_access(&mut self, access: Access) {
        self.access = access;
        // Going back to read-write resets the sync state (automerge does it), so that the
        // peer resends what was ignored meanwhile.
        self.state.set_read_only(access == Access::Read);
    }
}

struct Peer {
    principal: Principal,
    /// This node dialled the connection and plays the client on it.
    outbound: bool,
    remote: Option<RemotePeer>,
    /// Our sessions with this peer, by document.
    sessions: BTreeMap<DocumentId, Session>,
}

struct RemotePeer {
    peer_id: PeerId,
    storage_id: Option<StorageId>,
    ephemeral: bool,
}

/// The sync engine. See the module docs.
pub struct Engine {
    config: EngineConfig,
    now: i64,
    peers: HashMap<ConnId, Peer>,
    /// Boxed: a `DocState` holds an `Automerge` inline (about 3.6 KiB), and a hash map keeps
    /// spare slots (up to half of them empty after it grows), so inline states cost a few KiB
    /// per loaded document in empty slots alone (issue 17: memory per idle document).
    docs: HashMap<DocumentId, Box<DocState>>,
    /// Documents without sessions, by when they became idle: eviction pops from the front.
    idle: BTreeSet<(i64, DocumentId)>,
    /// Loaded documents kept as their saved bytes (`document_dormant_ms`), not in `docs`.
    dormant: HashMap<DocumentId, Dormant>,
    /// The last entry of `idle` looked at for sleeping (`sleep_idle`).
    sleep_cursor: Option<(i64, DocumentId)>,
    /// What the documents held take: the sum of every awake one's `DocState::memory` and
    /// every dormant one's `Dormant::memory`, kept as they change (`max_document_memory`).
    memory: usize,
    /// Which document each in-flight write belongs to.
    writes: HashMap<WriteId, DocumentId>,
    next_write: u64,
    /// Documents to keep in sync with the servers this node dialled.
    subscribed: BTreeSet<DocumentId>,
    /// Loads of sync states in flight: which sessions wait for them.
    state_loads: HashMap<(DocumentId, StorageId), Vec<ConnId>>,
    stats: EngineStats,
    out: Vec<Effect>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("role", &self.config.role)
            .field("peers", &self.peers.len())
            .field("docs", &self.docs.len())
            .finish()
    }
}

impl Engine {
    pub fn new(config: EngineConfig) -> Self {
        let first_write = config.shard.index as u64;
        Self {
            config,
            now: 0,
            peers: HashMap::new(),
            docs: HashMap::new(),
            idle: BTreeSet::new(),
            dormant: HashMap::new(),
            sleep_cursor: None,
            memory: 0,
            writes: HashMap::new(),
            next_write: first_write,
            subscribed: BTreeSet::new(),
            state_loads: HashMap::new(),
            stats: EngineStats::default(),
            out: Vec::new(),
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Documents held in memory, dormant ones included.
    pub fn loaded_documents(&self) -> usize {
        self.docs.len() + self.dormant.len()
    }

    /// What the documents held take in memory, as `max_document_memory` counts it.
    pub fn document_memory(&self) -> usize {
        self.memory
    }

    /// `document_memory` counted afresh from every document held: the simulator checks the
    /// running count against it.
    #[cfg(test)]
    pub(crate) fn document_memory_recounted(&self) -> usize {
        let awake: usize = self.docs.values().map(|d| memory_estimate(&d.doc)).sum();
        awake + self.dormant.values().map(Dormant::memory).sum::<usize>()
    }

    /// Connections known to the engine.
    pub fn connections(&self) -> usize {
        self.peers.len()
    }

    /// A loaded, ready document (read-only: changes go through [`Input::Edit`]).
    pub fn document(&self, doc: &DocumentId) -> Option<&Automerge> {
        self.docs
            .get(doc)
            .filter(|d| d.status == DocStatus::Ready)
            .map(|d| &d.doc)
    }

    /// The remote peer id of a connection, once it has joined.
    pub fn remote_peer_id(&self, conn: ConnId) -> Option<&str> {
        self.peers
            .get(&conn)
            .and_then(|p| p.remote.as_ref())
            .map(|r| r.peer_id.as_str())
    }

    /// The heads this node and the peer on `conn` are both known to hold for `doc`
    /// (automerge's `sync::State::shared_heads`), if that session exists.
    ///
    /// Read-only, for the client glue: a device compares them with its own heads to tell
    /// whether the server holds every local change yet. The server announces only stored
    /// heads (the durability barrier), so whatever these cover is durable on the server.
    pub fn shared_heads(&self, conn: ConnId, doc: &DocumentId) -> Option<&[ChangeHash]> {
        self.peers
            .get(&conn)?
            .sessions
            .get(doc)
            .map(|s| s.state.shared_heads.as_slice())
    }

    /// Handles one input at time `now` (milliseconds, any epoch) and returns what to do.
    pub fn handle(&mut self, input: Input, now: i64, access: &dyn AccessPolicy) -> Vec<Effect> {
        self.now = now;
        match input {
            Input::Connected { conn, principal } => {
                let outbound = self.config.role == EngineRole::Client;
                self.on_connected(conn, principal, outbound)
            }
            Input::Dialed { conn, principal } => self.on_connected(conn, principal, true),
            Input::Frame { conn, bytes } => self.on_frame(conn, bytes, access),
            Input::Message {
                conn,
                message,
                size,
            } => self.on_message(conn, message, size, access),
            Input::Disconnected { conn } => self.on_disconnected(conn),
            Input::DocLoaded { doc, chunks } => self.on_doc_loaded(doc, chunks),
            Input::SyncStateLoaded {
                doc,
                storage_id,
                state,
            } => self.on_sync_state_loaded(doc, storage_id, state),
            Input::WriteDone { id, result } => self.on_write_done(id, result),
            Input::Edit { doc, edit, token } => self.on_edit(doc, edit, token),
            Input::Subscribe { doc } => self.on_subscribe(doc),
            Input::Unsubscribe { doc } => self.on_unsubscribe(doc),
            Input::AccessChanged { doc, principal } => {
                self.on_access_changed(doc, principal, access)
            }
            Input::Kick { principal, reason } => self.on_kick(&principal, &reason),
            Input::Tick => self.on_tick(),
        }
        std::mem::take(&mut self.out)
    }

    // ---- connections -------------------------------------------------------------------

    fn on_connected(&mut self, conn: ConnId, principal: Principal, outbound: bool) {
        self.peers.insert(
            conn,
            Peer {
                principal,
                outbound,
                remote: None,
                sessions: BTreeMap::new(),
            },
        );
        // Every shard hears of the connection; the home shard alone says `join`.
        if outbound && self.config.shard.is_home() {
            let join = Message::Join(JoinMessage {
                sender_id: PeerId::new(self.config.peer_id.clone()),
                supported_protocol_versions: vec![protocol::PROTOCOL_VERSION.to_owned()],
                peer_metadata: self.our_metadata(),
            });
            self.send(conn, &join);
        }
    }

    fn our_metadata(&self) -> PeerMetadata {
        PeerMetadata {
            storage_id: self.config.storage_id.clone().map(StorageId::new),
            is_ephemeral: Some(false),
        }
    }

    fn on_disconnected(&mut self, conn: ConnId) {
        let Some(peer) = self.peers.remove(&conn) else {
            return;
        };
        let storage_id = peer
            .remote
            .as_ref()
            .filter(|r| !r.ephemeral)
            .and_then(|r| r.storage_id.clone());
        for (doc_id, session) in peer.sessions {
            // Remember how far we got, so a reconnect with nothing new costs little.
            if let Some(storage_id) = &storage_id
                && session.ready
            {
                self.write(WriteOp::PutSyncState {
                    doc: doc_id,
                    storage_id: storage_id.clone(),
                    state: session.state.encode(),
                });
            }
            self.detach_session(conn, doc_id);
        }
    }

    /// Removes `conn` from a document's sessions and marks the document idle if it was the
    /// last one.
    fn detach_session(&mut self, conn: ConnId, doc_id: DocumentId) {
        let now = self.now;
        if let Some(doc) = self.docs.get_mut(&doc_id) {
            doc.sessions.remove(&conn);
            if doc.sessions.is_empty() && doc.idle_since.is_none() {
                doc.idle_since = Some(now);
                self.idle.insert((now, doc_id));
            }
        }
    }

    fn close(&mut self, conn: ConnId, code: CloseCode, reason: impl Into<String>) {
        let reason = reason.into();
        if let Some(peer) = self.peers.get(&conn) {
            // Best effort: tell the peer why in protocol terms before the close frame.
            let error = Message::Error(ErrorMessage {
                sender_id: Some(PeerId::new(self.config.peer_id.clone())),
                target_id: peer.remote.as_ref().map(|r| r.peer_id.clone()),
                message: reason.clone(),
            });
            self.send(conn, &error);
        }
        self.on_disconnected(conn);
        self.out.push(Effect::Close { conn, code, reason });
    }

    fn refuse(&mut self, conn: Option<ConnId>, reason: &'static str, detail: impl Into<String>) {
        self.out.push(Effect::Refused {
            conn,
            reason,
            detail: detail.into(),
        });
    }

    fn send(&mut self, conn: ConnId, message: &Message) {
        let bytes = protocol::encode(message);
        self.stats.frames_out += 1;
        self.stats.bytes_out += bytes.len() as u64;
        self.out.push(Effect::Send { conn, bytes });
    }

    fn on_kick(&mut self, principal: &Principal, reason: &str) {
        let conns: Vec<ConnId> = self
            .peers
            .iter()
            .filter(|(_, p)| &p.principal == principal)
            .map(|(c, _)| *c)
            .collect();
        for conn in conns {
            // Every shard hears a kick: the home shard tells the peer and closes, the
            // others forget the connection (keeping its sync states) without a word.
            let home = self.config.shard.is_home();
            if home {
                self.refuse(Some(conn), "revoked", reason);
            }
            self.end_connection(conn, home, CloseCode::Policy, reason);
        }
    }

    /// Ends a connection over something about the connection itself. The shard that `speaks`
    /// (the one a message with a document was routed to, or the home shard for what every
    /// shard hears) tells the peer and closes; another shard only forgets the connection, as
    /// the closed socket will soon tell it anyway (`sync::shards`).
    fn end_connection(
        &mut self,
        conn: ConnId,
        speaks: bool,
        code: CloseCode,
        reason: impl Into<String>,
    ) {
        if speaks {
            self.close(conn, code, reason);
        } else {
            self.on_disconnected(conn);
        }
    }

    // ---- frames ------------------------------------------------------------------------

    fn on_frame(&mut self, conn: ConnId, bytes: Vec<u8>, access: &dyn AccessPolicy) {
        if !self.peers.contains_key(&conn) {
            return;
        }
        let joined = self.peers.get(&conn).is_some_and(|p| p.remote.is_some());
        let message = match protocol::decode(&bytes, &self.config.wire_limits) {
            Ok(m) => m,
            // A well-formed message of a type this version does not know, from a peer that
            // joined: newer automerge-repo versions add types, and a peer speaking them must
            // not lose its connection over it. Dropped and counted; a malformed message of a
            // known type still closes (below).
            Err(DecodeError::UnknownType(name)) if joined => {
                self.count_frame(bytes.len());
                self.refuse(Some(conn), "unknown_message_type", name);
                return;
            }
            Err(e) => {
                self.count_frame(bytes.len());
                let code = match e {
                    DecodeError::TooLarge { .. } => CloseCode::TooBig,
                    _ => CloseCode::Protocol,
                };
                self.refuse(Some(conn), e.code(), e.to_string());
                self.close(conn, code, format!("bad message: {e}"));
                return;
            }
        };
        self.on_message(conn, message, bytes.len(), access);
    }

    fn count_frame(&mut self, size: usize) {
        self.stats.frames_in += 1;
        self.stats.bytes_in += size as u64;
    }

    /// A decoded message. One about a document reaches only that document's shard, which
    /// answers it; one without (the handshake, `leave`, `error`) reaches every shard, and
    /// only the home shard answers, counts or refuses it (`speaks`), so the peer hears once.
    fn on_message(
        &mut self,
        conn: ConnId,
        message: Message,
        size: usize,
        access: &dyn AccessPolicy,
    ) {
        if !self.peers.contains_key(&conn) {
            return;
        }
        let speaks = self.config.shard.is_home() || message.document_id().is_some();
        if speaks {
            self.count_frame(size);
        }
        let (joined, outbound) = self
            .peers
            .get(&conn)
            .map_or((false, false), |p| (p.remote.is_some(), p.outbound));
        match (outbound, joined, message) {
            (false, false, Message::Join(join)) => self.on_join(
                conn,
                join.sender_id,
                &join.supported_protocol_versions,
                join.peer_metadata,
                speaks,
            ),
            (true, false, Message::Peer(peer)) => self.on_peer(
                conn,
                peer.sender_id,
                &peer.selected_protocol_version,
                peer.peer_metadata,
                speaks,
            ),
            (_, false, Message::Error(ErrorMessage { message, .. })) => {
                if speaks {
                    self.refuse(Some(conn), "peer_error", message.clone());
                }
                let reason = format!("peer reported: {message}");
                self.end_connection(conn, speaks, CloseCode::Normal, reason);
            }
            (_, false, other) => {
                let kind = other.message_type().as_str();
                if speaks {
                    self.refuse(Some(conn), "not_joined", kind);
                }
                let reason = format!("expected join first, got {kind}");
                self.end_connection(conn, speaks, CloseCode::Protocol, reason);
            }
            (_, true, message) => self.on_joined_message(conn, message, speaks, access),
        }
    }

    fn on_join(
        &mut self,
        conn: ConnId,
        sender_id: PeerId,
        versions: &[String],
        metadata: PeerMetadata,
        speaks: bool,
    ) {
        if !versions.iter().any(|v| v == protocol::PROTOCOL_VERSION) {
            if speaks {
                self.refuse(Some(conn), "unsupported_version", format!("{versions:?}"));
            }
            self.end_connection(
                conn,
                speaks,
                CloseCode::Protocol,
                format!(
                    "unsupported protocol versions {versions:?}; this server speaks {:?}",
                    protocol::PROTOCOL_VERSION
                ),
            );
            return;
        }
        let Some(peer) = self.peers.get(&conn) else {
            return;
        };
        // The peer id is bound to the token: a device joins as its device id (optionally
        // with a `:suffix` for several apps on one device), so one device cannot pose as
        // another in anything the server relays.
        if let Some(stem) = peer.principal.peer_id_stem() {
            let id = sender_id.as_str();
            let bound = id == stem
                || id
                    .strip_prefix(stem.as_str())
                    .is_some_and(|rest| rest.starts_with(':'));
            if !bound {
                if speaks {
                    self.refuse(Some(conn), "peer_id_mismatch", id.to_owned());
                }
                self.end_connection(
                    conn,
                    speaks,
                    CloseCode::Policy,
                    format!("peer id {id:?} does not belong to this token (expected {stem:?})"),
                );
                return;
            }
        }
        let reply = Message::Peer(PeerMessage {
            sender_id: PeerId::new(self.config.peer_id.clone()),
            selected_protocol_version: protocol::PROTOCOL_VERSION.to_owned(),
            target_id: sender_id.clone(),
            peer_metadata: self.our_metadata(),
        });
        if let Some(peer) = self.peers.get_mut(&conn) {
            peer.remote = Some(RemotePeer {
                peer_id: sender_id,
                storage_id: metadata.storage_id,
                ephemeral: metadata.is_ephemeral.unwrap_or(false),
            });
        }
        if speaks {
            self.send(conn, &reply);
        }
    }

    fn on_peer(
        &mut self,
        conn: ConnId,
        sender_id: PeerId,
        version: &str,
        metadata: PeerMetadata,
        speaks: bool,
    ) {
        if version != protocol::PROTOCOL_VERSION {
            self.end_connection(
                conn,
                speaks,
                CloseCode::Protocol,
                format!("server selected unsupported protocol version {version:?}"),
            );
            return;
        }
        if let Some(peer) = self.peers.get_mut(&conn) {
            peer.remote = Some(RemotePeer {
                peer_id: sender_id,
                storage_id: metadata.storage_id,
                ephemeral: metadata.is_ephemeral.unwrap_or(false),
            });
        }
        let docs: Vec<DocumentId> = self.subscribed.iter().copied().collect();
        for doc in docs {
            self.open_session(conn, doc, Access::ReadWrite, WriteScope::Any, true);
            if let Some(state) = self.docs.get_mut(&doc) {
                state.dirty = true;
            }
            self.process(doc);
        }
    }

    fn on_joined_message(
        &mut self,
        conn: ConnId,
        message: Message,
        speaks: bool,
        access: &dyn AccessPolicy,
    ) {
        let Some(remote_id) = self.remote_peer_id(conn).map(str::to_owned) else {
            return;
        };
        if let Some(sender) = message.sender_id()
            && sender.as_str() != remote_id
        {
            if speaks {
                self.refuse(Some(conn), "sender_mismatch", sender.as_str().to_owned());
            }
            self.end_connection(
                conn,
                speaks,
                CloseCode::Policy,
                format!(
                    "senderId {:?} differs from the joined peer id",
                    sender.as_str()
                ),
            );
            return;
        }
        match message {
            Message::Request(payload) | Message::Sync(payload) => {
                self.on_sync(conn, payload, access)
            }
            Message::DocUnavailable(DocUnavailableMessage { document_id, .. }) => {
                if let Some(peer) = self.peers.get_mut(&conn) {
                    peer.sessions.remove(&document_id);
                }
                self.detach_session(conn, document_id);
                self.out.push(Effect::DocUnavailable {
                    conn,
                    doc: document_id,
                });
            }
            Message::Ephemeral(EphemeralMessage {
                count,
                session_id,
                document_id,
                data,
                ..
            }) => self.on_ephemeral(
                conn,
                &remote_id,
                count,
                session_id,
                document_id,
                data,
                access,
            ),
            Message::Leave(_) => {
                self.on_disconnected(conn);
                if speaks {
                    self.out.push(Effect::Close {
                        conn,
                        code: CloseCode::Normal,
                        reason: "peer left".into(),
                    });
                }
            }
            Message::Error(ErrorMessage { message, .. }) => {
                if speaks {
                    self.refuse(Some(conn), "peer_error", message);
                }
            }
            // Gossip of remote heads is an optimisation for relays; this node answers from
            // its own documents, so it has nothing to do with them.
            Message::RemoteHeadsChanged(_) | Message::RemoteSubscriptionChange(_) => {}
            Message::Join(_) | Message::Peer(_) => {
                if speaks {
                    self.refuse(Some(conn), "duplicate_join", String::new());
                }
                let reason = "join after the handshake";
                self.end_connection(conn, speaks, CloseCode::Protocol, reason);
            }
        }
    }

    fn on_sync(&mut self, conn: ConnId, payload: SyncMessage, access: &dyn AccessPolicy) {
        let doc_id = payload.document_id;
        let Some(principal) = self.peers.get(&conn).map(|p| p.principal.clone()) else {
            return;
        };
        let allowed = access.access(&principal, &doc_id);
        if allowed == Access::None {
            self.refuse(Some(conn), "forbidden", doc_id.to_string());
            self.drop_session(conn, doc_id);
            self.send_unavailable(conn, doc_id);
            return;
        }
        let checked = match protocol::check_sync_message(&payload.data, &self.config.sync_limits) {
            Ok(checked) => checked,
            Err(e) => {
                self.refuse(Some(conn), "bad_sync_message", e.to_string());
                self.close(conn, CloseCode::Protocol, format!("bad sync message: {e}"));
                return;
            }
        };
        let decoded = catch_unwind(|| sync::Message::decode(&payload.data));
        let mut message = match decoded {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                self.refuse(Some(conn), "bad_sync_message", e.to_string());
                self.close(conn, CloseCode::Protocol, format!("bad sync message: {e}"));
                return;
            }
            Err(_) => {
                self.stats.panics_caught += 1;
                self.refuse(Some(conn), "sync_decode_panic", doc_id.to_string());
                self.close(
                    conn,
                    CloseCode::Protocol,
                    "sync message could not be decoded",
                );
                return;
            }
        };
        if !checked.inflated.is_empty() {
            // Compressed changes, inflated within the caps: automerge gets the inflated ones
            // and never inflates anything a peer sent.
            let mut entries: Vec<Vec<u8>> = message.changes.iter().map(<[u8]>::to_vec).collect();
            for (index, entry) in checked.inflated {
                if let Some(slot) = entries.get_mut(index) {
                    *slot = entry;
                }
            }
            message.changes = sync::ChunkList::from(entries);
        }
        if self.ensure_doc(doc_id, Some(conn)).is_err() {
            return;
        }
        // A message naming only heads we hold sets the shared heads to those (automerge and
        // `quiet` alike), whatever the persisted sync state said: the usual reconnect of a
        // device with nothing new needs no read of it (issue 17).
        let state_needed = !self.docs.get(&doc_id).is_some_and(|d| {
            d.status == DocStatus::Ready
                && !message.heads.is_empty()
                && quiet::unknown_heads(&d.doc, &message.heads).is_some_and(|u| u.is_empty())
        });
        let scope = access.write_scope(&principal, &doc_id);
        if self.open_session(conn, doc_id, allowed, scope, state_needed)
            && let Some(session) = self
                .peers
                .get_mut(&conn)
                .and_then(|p| p.sessions.get_mut(&doc_id))
        {
            session.inbox.push_back(Inbound {
                message,
                carried: checked.carried,
            });
        }
        self.process(doc_id);
    }

    fn send_unavailable(&mut self, conn: ConnId, doc_id: DocumentId) {
        let Some(remote) = self.remote_peer_id(conn).map(str::to_owned) else {
            return;
        };
        let message = Message::DocUnavailable(DocUnavailableMessage {
            sender_id: PeerId::new(self.config.peer_id.clone()),
            target_id: PeerId::new(remote),
            document_id: doc_id,
        });
        self.send(conn, &message);
    }

    fn drop_session(&mut self, conn: ConnId, doc_id: DocumentId) {
        let removed = self
            .peers
            .get_mut(&conn)
            .and_then(|p| p.sessions.remove(&doc_id))
            .is_some();
        if removed {
            self.detach_session(conn, doc_id);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_ephemeral(
        &mut self,
        conn: ConnId,
        sender: &str,
        count: u64,
        session_id: SessionId,
        doc_id: DocumentId,
        data: Vec<u8>,
        access: &dyn AccessPolicy,
    ) {
        let Some(principal) = self.peers.get(&conn).map(|p| p.principal.clone()) else {
            return;
        };
        if access.access(&principal, &doc_id) == Access::None {
            self.refuse(Some(conn), "forbidden", doc_id.to_string());
            self.send_unavailable(conn, doc_id);
            return;
        }
        // Relay to the other peers syncing this document (presence, cursors): only to those
        // who already have a session, so nothing is revealed to anyone new.
        let targets: Vec<ConnId> = self
            .docs
            .get(&doc_id)
            .map(|d| d.sessions.iter().copied().filter(|c| *c != conn).collect())
            .unwrap_or_default();
        for target in targets {
            let Some(target_id) = self.remote_peer_id(target).map(str::to_owned) else {
                continue;
            };
            let message = Message::Ephemeral(EphemeralMessage {
                sender_id: PeerId::new(sender),
                target_id: PeerId::new(target_id),
                count,
                session_id: session_id.clone(),
                document_id: doc_id,
                data: data.clone(),
            });
            self.send(target, &message);
        }
    }

    // ---- documents ---------------------------------------------------------------------

    /// Makes sure the document is loaded or loading. When a limit leaves no room, tells
    /// `conn` (if any) and returns the limit hit, as a peer and the log read it.
    fn ensure_doc(&mut self, doc_id: DocumentId, conn: Option<ConnId>) -> Result<(), String> {
        if self.docs.contains_key(&doc_id) || self.wake(doc_id) {
            return Ok(());
        }
        if self.loaded_documents() >= self.config.max_loaded_documents {
            self.evict_idle(true);
        }
        self.evict_for_memory();
        if let Some((reason, limit)) = self.busy() {
            self.refuse(conn, reason, limit.clone());
            if let Some(conn) = conn {
                let remote = self.remote_peer_id(conn).map(PeerId::new);
                let error = Message::Error(ErrorMessage {
                    sender_id: Some(PeerId::new(self.config.peer_id.clone())),
                    target_id: remote,
                    message: format!("server busy: {limit}; retry later"),
                });
                self.send(conn, &error);
            }
            return Err(limit);
        }
        self.docs
            .insert(doc_id, DocState::new(DocStatus::Loading, None));
        self.remeasure(doc_id);
        self.out.push(Effect::LoadDoc { doc: doc_id });
        Ok(())
    }

    /// Why no document can be loaded now, if a limit leaves no room: the refusal's reason and
    /// the limit hit, as a peer and the log read it.
    fn busy(&self) -> Option<(&'static str, String)> {
        let limit = self.config.max_loaded_documents;
        if self.loaded_documents() >= limit {
            return Some((
                "too_many_documents",
                format!("{limit} documents loaded (max_loaded_documents)"),
            ));
        }
        let budget = self
            .config
            .max_document_memory
            .filter(|_| self.memory_full())?;
        Some((
            "document_memory_full",
            format!(
                "documents take {} KiB of the {} KiB allowed (max_document_memory)",
                self.memory / 1024,
                budget / 1024
            ),
        ))
    }

    /// Whether the documents held take the whole memory budget.
    fn memory_full(&self) -> bool {
        self.config
            .max_document_memory
            .is_some_and(|budget| self.memory >= budget)
    }

    /// Evicts idle documents, oldest first, until the documents held fit the memory budget
    /// or none is left idle.
    fn evict_for_memory(&mut self) {
        while self.memory_full() && self.evict_idle(true) {}
    }

    /// Measures `doc_id` again after its content changed (loaded, woken, written, dropped).
    fn remeasure(&mut self, doc_id: DocumentId) {
        if let Some(state) = self.docs.get_mut(&doc_id) {
            let now = memory_estimate(&state.doc);
            self.memory = self.memory.saturating_sub(state.memory) + now;
            state.memory = now;
        }
    }

    /// Takes `doc_id` out of `docs`, and what it counted for out of `memory`.
    fn remove_doc(&mut self, doc_id: &DocumentId) -> Option<Box<DocState>> {
        let state = self.docs.remove(doc_id)?;
        self.memory = self.memory.saturating_sub(state.memory);
        Some(state)
    }

    /// Takes `doc_id` out of `dormant`, and what it counted for out of `memory`.
    fn remove_dormant(&mut self, doc_id: &DocumentId) -> Option<Dormant> {
        let dormant = self.dormant.remove(doc_id)?;
        self.memory = self.memory.saturating_sub(dormant.memory());
        Some(dormant)
    }

    /// A dormant document loaded again from its saved bytes, ready and idle from now (a
    /// session attached next takes it off the idle queue; its old entry is behind the sleep
    /// cursor, so without a new one it would never sleep again). Returns false if it was not
    /// dormant, or if its bytes did not load: then it is dropped, logged, and loaded from
    /// storage like any document not in memory (storage holds every change of a dormant
    /// document).
    fn wake(&mut self, doc_id: DocumentId) -> bool {
        let Some(dormant) = self.remove_dormant(&doc_id) else {
            return false;
        };
        self.idle.remove(&(dormant.idle_since, doc_id));
        // Like a stored document's load, inside `catch_unwind`: never a panic of the engine.
        let loaded = catch_unwind(AssertUnwindSafe(|| Automerge::load(&dormant.saved)))
            .unwrap_or_else(|_| Err(automerge::AutomergeError::Fail));
        match loaded {
            Ok(doc) => {
                let mut state = DocState::new(DocStatus::Ready, Some(self.now));
                state.doc = doc;
                state.chunks = dormant.chunks;
                state.dirty = true;
                self.docs.insert(doc_id, state);
                self.remeasure(doc_id);
                self.idle.insert((self.now, doc_id));
                self.stats.docs_woken_total += 1;
                true
            }
            Err(e) => {
                self.refuse(
                    None,
                    "dormant_load_failed",
                    format!(
                        "{doc_id}: its saved bytes did not load ({e}); loading it from storage"
                    ),
                );
                false
            }
        }
    }

    /// Opens a session of `conn` on a (loaded or loading) document. Returns false if the
    /// connection is gone.
    fn open_session(
        &mut self,
        conn: ConnId,
        doc_id: DocumentId,
        access: Access,
        scope: WriteScope,
        state_needed: bool,
    ) -> bool {
        let outbound = self.peers.get(&conn).is_some_and(|p| p.outbound);
        if outbound && self.ensure_doc(doc_id, None).is_err() {
            return false;
        }
        let Some(peer) = self.peers.get_mut(&conn) else {
            return false;
        };
        if let Some(session) = peer.sessions.get_mut(&doc_id) {
            session.set_access(access);
            session.scope = scope;
            return true;
        }
        let storage_id = peer
            .remote
            .as_ref()
            .filter(|r| !r.ephemeral && state_needed)
            .and_then(|r| r.storage_id.clone());
        let ready = storage_id.is_none();
        peer.sessions.insert(
            doc_id,
            Session {
                state: sync_state_for(access),
                access,
                scope,
                waiting: Waiting::default(),
                ready,
                inbox: VecDeque::new(),
                fresh: true,
                reply_due: false,
                delivered: Vec::new(),
                sent_heads: None,
            },
        );
        if let Some(doc) = self.docs.get_mut(&doc_id) {
            doc.sessions.insert(conn);
            if let Some(since) = doc.idle_since.take() {
                self.idle.remove(&(since, doc_id));
            }
        }
        if let Some(storage_id) = storage_id {
            let waiting = self
                .state_loads
                .entry((doc_id, storage_id.clone()))
                .or_default();
            if waiting.is_empty() {
                self.out.push(Effect::LoadSyncState {
                    doc: doc_id,
                    storage_id,
                });
            }
            waiting.push(conn);
        }
        true
    }

    fn on_sync_state_loaded(
        &mut self,
        doc_id: DocumentId,
        storage_id: StorageId,
        state: Option<Vec<u8>>,
    ) {
        let waiting = self
            .state_loads
            .remove(&(doc_id, storage_id))
            .unwrap_or_default();
        let decoded = state.and_then(|bytes| sync::State::decode(&bytes).ok());
        for conn in waiting {
            if let Some(session) = self
                .peers
                .get_mut(&conn)
                .and_then(|p| p.sessions.get_mut(&doc_id))
                && !session.ready
            {
                if let Some(state) = &decoded {
                    // Only the shared heads persist; the rest starts afresh.
                    session.state.shared_heads = state.shared_heads.clone();
                }
                session.ready = true;
            }
        }
        if let Some(doc) = self.docs.get_mut(&doc_id) {
            doc.dirty = true;
        }
        self.process(doc_id);
    }

    fn on_doc_loaded(&mut self, doc_id: DocumentId, chunks: Result<Option<Vec<Vec<u8>>>, String>) {
        let Some(state) = self.docs.get_mut(&doc_id) else {
            return;
        };
        if state.status != DocStatus::Loading {
            return;
        }
        let loaded = match chunks {
            Ok(Some(chunks)) => {
                load_chunks(self.config.load, &chunks).map(|loaded| (loaded, chunks.len()))
            }
            Ok(None) => Err("not found".to_owned()),
            Err(e) => Err(e),
        };
        match loaded {
            Ok(((doc, orphans_dropped), count)) => {
                state.doc = doc;
                state.chunks = count;
                state.status = DocStatus::Ready;
                state.dirty = true;
                self.stats.docs_loaded_total += 1;
                if let Some(snapshot) = orphans_dropped {
                    state.chunks = 1;
                    state.unstored += 1;
                    let id = self.write(WriteOp::Compact {
                        doc: doc_id,
                        snapshot,
                    });
                    if let Some(state) = self.docs.get_mut(&doc_id) {
                        state.last_write = Some(id);
                    }
                    self.refuse(
                        None,
                        "orphaned_changes",
                        format!("{doc_id}: changes stored without a dependency were dropped"),
                    );
                }
                self.remeasure(doc_id);
                let Some(state) = self.docs.get_mut(&doc_id) else {
                    return;
                };
                let edits = std::mem::take(&mut state.waiting_edits);
                for (edit, token) in edits {
                    self.apply_edit(doc_id, edit, token);
                }
                self.process(doc_id);
            }
            Err(reason) => {
                let is_client = self.config.role == EngineRole::Client;
                let not_found = reason == "not found";
                // Head office takes in what a branch sends: the first peer with read-write
                // access to the unknown id becomes its source.
                let adopter = (self.config.accept_new_documents && not_found)
                    .then(|| {
                        state.sessions.iter().find_map(|conn| {
                            let peer = self.peers.get(conn)?;
                            let session = peer.sessions.get(&doc_id)?;
                            (session.access == Access::ReadWrite).then(|| peer.principal.clone())
                        })
                    })
                    .flatten();
                if (is_client || adopter.is_some()) && not_found {
                    // A client asks the server for a document it does not have yet; head
                    // office receives a document a branch made.
                    state.status = DocStatus::Ready;
                    state.dirty = true;
                    let edits = std::mem::take(&mut state.waiting_edits);
                    if let Some(by) = adopter {
                        self.out.push(Effect::NewDocument { doc: doc_id, by });
                    }
                    for (edit, token) in edits {
                        self.apply_edit(doc_id, edit, token);
                    }
                    self.process(doc_id);
                    return;
                }
                // Nothing to serve: answer whoever waited and hold nothing.
                let Some(state) = self.remove_doc(&doc_id) else {
                    return;
                };
                let sessions = state.sessions.clone();
                for conn in sessions {
                    if let Some(peer) = self.peers.get_mut(&conn) {
                        peer.sessions.remove(&doc_id);
                    }
                    if !not_found {
                        self.refuse(Some(conn), "load_failed", reason.clone());
                    }
                    self.send_unavailable(conn, doc_id);
                }
                // Edits that waited on the load are applied in their order to one fresh
                // document once the first creation makes it: a second creation then gets
                // `Exists` and a change applies on top. (Re-inserting a fresh state for each
                // creation dropped the first one's pending answer, so its caller waited
                // forever.)
                let mut created = false;
                for (edit, token) in state.waiting_edits {
                    let result = match edit {
                        edit if not_found && created => {
                            self.apply_edit(doc_id, edit, token);
                            continue;
                        }
                        LocalEdit::Create(doc) if not_found => {
                            created = true;
                            // Re-insert as a fresh, ready document and create it.
                            self.docs
                                .insert(doc_id, DocState::new(DocStatus::Ready, Some(self.now)));
                            self.remeasure(doc_id);
                            self.idle.insert((self.now, doc_id));
                            self.apply_edit(doc_id, LocalEdit::Create(doc), token);
                            continue;
                        }
                        _ if not_found => Err(LocalEditError::NotFound(doc_id)),
                        _ => Err(LocalEditError::Storage(reason.clone())),
                    };
                    self.out.push(Effect::EditDone {
                        token,
                        doc: doc_id,
                        result,
                    });
                }
            }
        }
    }

    /// Applies what the ready sessions of a document received, stores new changes, and
    /// announces them once stored.
    fn process(&mut self, doc_id: DocumentId) {
        let Some(state) = self.docs.get_mut(&doc_id) else {
            return;
        };
        if state.status != DocStatus::Ready {
            return;
        }
        let before = state.doc.get_heads();
        let conns: Vec<ConnId> = state.sessions.iter().copied().collect();
        let mut failed: Vec<(ConnId, String, bool)> = Vec::new();
        let mut refused: Vec<(ConnId, Refusal)> = Vec::new();
        let max_held = self.config.sync_limits.max_changes;
        for conn in &conns {
            let Some(session) = self
                .peers
                .get_mut(conn)
                .and_then(|p| p.sessions.get_mut(&doc_id))
            else {
                continue;
            };
            if !session.ready {
                continue;
            }
            while let Some(Inbound {
                mut message,
                mut carried,
            }) = session.inbox.pop_front()
            {
                session.reply_due = true;
                let mut applied = false;
                if !message.changes.is_empty() {
                    let gate = catch_unwind(AssertUnwindSafe(|| {
                        admit::gate(
                            &state.doc,
                            session.access,
                            session.scope,
                            &mut session.waiting,
                            &session.state,
                            &mut message,
                            max_held,
                        )
                    }));
                    match gate {
                        Ok(Ok(Gated::AsIs)) => {}
                        Ok(Ok(Gated::Rewritten(accepted))) => {
                            self.stats.changes_held += session.waiting.held.len() as u64;
                            carried = accepted;
                        }
                        Ok(Ok(Gated::Applied {
                            doc,
                            state: synced,
                            carried: accepted,
                        })) => {
                            state.doc = *doc;
                            session.state = synced;
                            carried = accepted;
                            applied = true;
                        }
                        Ok(Err(refusal)) => {
                            carried.clear();
                            refused.push((*conn, refusal));
                        }
                        Err(_) => {
                            failed.push((*conn, "automerge panicked checking".into(), true));
                            break;
                        }
                    }
                }
                let result = if applied {
                    Ok(Ok(()))
                } else {
                    catch_unwind(AssertUnwindSafe(|| {
                        quiet::receive(&mut state.doc, &mut session.state, message)
                    }))
                };
                match result {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        failed.push((*conn, e.to_string(), false));
                        break;
                    }
                    Err(_) => {
                        failed.push((*conn, "automerge panicked".into(), true));
                        break;
                    }
                }
                // automerge drops a chunk it cannot read without an error (on a document
                // that has content): whatever the message carried must now be held, or
                // queued for its dependencies.
                if !carried.is_empty() {
                    let missing: HashSet<ChangeHash> =
                        state.doc.get_missing_deps(&carried).into_iter().collect();
                    if let Some(dropped) = carried.iter().find(|h| missing.contains(h)) {
                        refused.push((
                            *conn,
                            Refusal::Malformed(format!(
                                "change {dropped} was dropped by automerge as unreadable"
                            )),
                        ));
                    }
                }
            }
        }
        let after = state.doc.get_heads();
        // A dialled server whose answer names every head we hold has stored all of it.
        for conn in &conns {
            let Some(peer) = self.peers.get_mut(conn).filter(|p| p.outbound) else {
                continue;
            };
            let Some(session) = peer.sessions.get_mut(&doc_id) else {
                continue;
            };
            let holds_all =
                !after.is_empty() && after.iter().all(|h| session.state.shared_heads.contains(h));
            if holds_all && session.delivered != after {
                session.delivered.clone_from(&after);
                self.out.push(Effect::Delivered {
                    conn: *conn,
                    doc: doc_id,
                    heads: after.clone(),
                });
            }
        }
        if before != after {
            state.dirty = true;
            self.stats.changes_applied_batches += 1;
            let bytes = state.doc.save_after(&before);
            self.store_changes(doc_id, bytes);
        }
        for (conn, refusal) in refused {
            self.refuse_changes(conn, doc_id, &refusal);
        }
        for (conn, reason, panicked) in failed {
            if panicked {
                self.stats.panics_caught += 1;
            }
            self.refuse(Some(conn), "sync_failed", reason.clone());
            self.close(conn, CloseCode::Protocol, format!("sync failed: {reason}"));
        }
        self.announce(doc_id);
    }

    /// Tells the peer why its changes were refused (an `error` message naming the path and
    /// the rule) and reports the refusal. The connection stays: the peer's other documents
    /// keep syncing, and this one still receives what others write.
    fn refuse_changes(&mut self, conn: ConnId, doc_id: DocumentId, refusal: &Refusal) {
        let Some(peer) = self.peers.get(&conn) else {
            return;
        };
        let who = describe(&peer.principal);
        let error = Message::Error(ErrorMessage {
            sender_id: Some(PeerId::new(self.config.peer_id.clone())),
            target_id: peer.remote.as_ref().map(|r| r.peer_id.clone()),
            message: format!("changes to {doc_id} refused, nothing of them stored: {refusal}"),
        });
        // Reported before the peer is told, so the refusal is counted by the time it reads it.
        self.refuse(
            Some(conn),
            refusal.code(),
            format!("{who}: document {doc_id}: {refusal}"),
        );
        self.send(conn, &error);
    }

    /// Emits the write of new changes (and a compaction when enough chunks piled up).
    fn store_changes(&mut self, doc_id: DocumentId, bytes: Vec<u8>) -> WriteId {
        let id = self.write(WriteOp::AppendChanges { doc: doc_id, bytes });
        let compact = self.docs.get_mut(&doc_id).and_then(|state| {
            state.unstored += 1;
            state.chunks += 1;
            state.last_write = Some(id);
            (state.chunks > self.config.compact_after_chunks).then(|| {
                state.chunks = 1;
                state.unstored += 1;
                state.doc.save()
            })
        });
        if let Some(snapshot) = compact {
            let compacted = self.write(WriteOp::Compact {
                doc: doc_id,
                snapshot,
            });
            if let Some(state) = self.docs.get_mut(&doc_id) {
                state.last_write = Some(compacted);
            }
        }
        id
    }

    fn write(&mut self, op: WriteOp) -> WriteId {
        let id = WriteId(self.next_write);
        self.next_write += self.config.shard.count.max(1) as u64;
        let doc = match &op {
            WriteOp::AppendChanges { doc, .. }
            | WriteOp::Compact { doc, .. }
            | WriteOp::PutSyncState { doc, .. } => *doc,
        };
        // Sync states do not gate announcements; only content writes are tracked.
        let content = !matches!(op, WriteOp::PutSyncState { .. });
        if content {
            self.writes.insert(id, doc);
        }
        self.stats.writes_issued += 1;
        self.out.push(Effect::Write { id, op });
        // Every change of content is stored, so it is measured here.
        if content {
            self.remeasure(doc);
        }
        id
    }

    fn on_write_done(&mut self, id: WriteId, result: Result<(), String>) {
        let Some(doc_id) = self.writes.remove(&id) else {
            if let Err(e) = result {
                self.refuse(None, "sync_state_write_failed", e);
            }
            return;
        };
        let Some(state) = self.docs.get_mut(&doc_id) else {
            return;
        };
        state.unstored = state.unstored.saturating_sub(1);
        if state.status == DocStatus::Draining {
            // A write of content dropped after an earlier failure: only its end matters.
            let drained = state.unstored == 0;
            if let Err(e) = result {
                self.refuse(None, "write_failed", format!("{doc_id}: {e}"));
            }
            if drained {
                self.drained(doc_id);
            }
            return;
        }
        let mut answered = Vec::new();
        state.edits_in_flight.retain(|(w, token, heads)| {
            if *w == id {
                answered.push((*token, heads.clone()));
                false
            } else {
                true
            }
        });
        match result {
            Ok(()) => {
                let durable = state.unstored == 0;
                // Writes complete in order, so everything up to the edit is stored now.
                for (token, heads) in answered {
                    self.out.push(Effect::EditDone {
                        token,
                        doc: doc_id,
                        result: Ok(heads),
                    });
                }
                if durable {
                    let heads = state.doc.get_heads();
                    self.out.push(Effect::DocChanged { doc: doc_id, heads });
                    self.announce(doc_id);
                }
            }
            Err(e) => {
                // The document in memory now holds changes the disk does not. Drop them, so
                // nothing unstored is ever announced, and close the sessions that fed it:
                // their peers still hold the changes and resend them on reconnect.
                //
                // Every edit still waiting on a write of this document is answered now: its
                // change may build on what just failed, and nothing would answer it later.
                let later = std::mem::take(&mut state.edits_in_flight);
                let later = later.into_iter().map(|(_, token, heads)| (token, heads));
                for (token, _) in answered.into_iter().chain(later) {
                    self.out.push(Effect::EditDone {
                        token,
                        doc: doc_id,
                        result: Err(LocalEditError::Storage(e.clone())),
                    });
                }
                // The document's later writes are still in flight. It drains them before it
                // is loaded again (a load now could miss them, and their completions would
                // count down the writes of the new state, lifting its barrier early).
                state.status = DocStatus::Draining;
                state.doc = Automerge::new();
                state.dirty = false;
                state.chunks = 0;
                state.last_write = None;
                let sessions = std::mem::take(&mut state.sessions);
                let drained = state.unstored == 0;
                self.refuse(None, "write_failed", format!("{doc_id}: {e}"));
                for conn in sessions {
                    // Forget the session before closing: its sync state may name the changes
                    // that were not stored, and must not be persisted for the next connection.
                    if let Some(peer) = self.peers.get_mut(&conn) {
                        peer.sessions.remove(&doc_id);
                    }
                    self.close(conn, CloseCode::Internal, "storage failure; reconnect");
                }
                self.remeasure(doc_id);
                if drained {
                    self.drained(doc_id);
                }
            }
        }
    }

    /// The last write of a document dropped after a write failure is done: load it afresh
    /// if a session or an edit arrived meanwhile, else let it go.
    fn drained(&mut self, doc_id: DocumentId) {
        let Some(state) = self.docs.get_mut(&doc_id) else {
            return;
        };
        if state.sessions.is_empty() && state.waiting_edits.is_empty() {
            if let Some(since) = state.idle_since {
                self.idle.remove(&(since, doc_id));
            }
            self.remove_doc(&doc_id);
        } else {
            state.status = DocStatus::Loading;
            self.out.push(Effect::LoadDoc { doc: doc_id });
        }
    }

    /// Sends what each ready session of the document needs, unless writes are in flight: to
    /// every session when the content changed, else to those with a message to answer.
    fn announce(&mut self, doc_id: DocumentId) {
        let Some(state) = self.docs.get_mut(&doc_id) else {
            return;
        };
        if state.status != DocStatus::Ready || state.unstored > 0 {
            return;
        }
        let changed = state.dirty;
        state.dirty = false;
        let conns: Vec<ConnId> = state.sessions.iter().copied().collect();
        let empty = state.doc.get_heads().is_empty();
        let mut outgoing = Vec::new();
        let mut panicked = Vec::new();
        for conn in conns {
            let Some(peer) = self.peers.get_mut(&conn) else {
                continue;
            };
            let Some(remote) = peer.remote.as_ref().map(|r| r.peer_id.clone()) else {
                continue;
            };
            let Some(session) = peer.sessions.get_mut(&doc_id) else {
                continue;
            };
            if !session.ready {
                state.dirty |= changed;
                continue;
            }
            if !changed && !session.reply_due {
                continue;
            }
            session.reply_due = false;
            // automerge takes a peer's message that names our heads (and carries no
            // changes) as if we had already sent it those heads, and then stays silent. The
            // peer, which has not heard our heads, waits for an answer that never comes: a
            // device never learns the server holds its last change. So it is reminded of
            // what was really sent last.
            if let Some(sent) = &session.sent_heads {
                session.state.last_sent_heads.clone_from(sent);
            }
            let generated = catch_unwind(AssertUnwindSafe(|| {
                state.doc.generate_sync_message(&mut session.state)
            }));
            match generated {
                Ok(Some(mut message)) => {
                    let resets = message
                        .flags
                        .is_some_and(|f| f.contains(sync::MessageFlags::SYNC_RESET));
                    if session.access == Access::ReadWrite
                        && matches!(session.scope, WriteScope::Table(..))
                        && !resets
                    {
                        // No flags, so the restricted peer does not know we read v2 messages
                        // and sends its changes as change chunks: checking those costs less
                        // than taking a whole document apart (`admit::gate`). The read-only
                        // flag concerns read-only sessions; a sync reset (after one turns
                        // read-write) keeps its flags.
                        message.flags = None;
                    }
                    if !session.waiting.held.is_empty() {
                        // Held changes wait for what the peer has not sent (a bloom filter's
                        // false positive): ask for that instead of the held ones themselves.
                        let held: HashSet<ChangeHash> =
                            session.waiting.held.iter().map(|c| c.hash()).collect();
                        message.need.retain(|h| !held.contains(h));
                        for want in admit::wanted(&state.doc, &session.waiting) {
                            if !message.need.contains(&want) {
                                message.need.push(want);
                            }
                        }
                    }
                    // A client that has nothing yet asks with `request`, as automerge-repo
                    // does, so the server can answer `doc-unavailable`.
                    let is_request = peer.outbound && session.fresh && empty;
                    session.fresh = false;
                    session.sent_heads = Some(message.heads.clone());
                    let payload = SyncMessage {
                        sender_id: PeerId::new(self.config.peer_id.clone()),
                        target_id: remote,
                        document_id: doc_id,
                        data: message.encode(),
                    };
                    outgoing.push((
                        conn,
                        if is_request {
                            Message::Request(payload)
                        } else {
                            Message::Sync(payload)
                        },
                    ));
                }
                Ok(None) => {}
                Err(_) => panicked.push(conn),
            }
        }
        for (conn, message) in outgoing {
            self.send(conn, &message);
        }
        for conn in panicked {
            self.stats.panics_caught += 1;
            self.refuse(
                Some(conn),
                "sync_failed",
                "automerge panicked generating".to_owned(),
            );
            self.close(conn, CloseCode::Internal, "sync failed");
        }
    }

    // ---- local edits and subscriptions -------------------------------------------------

    fn on_edit(&mut self, doc_id: DocumentId, edit: LocalEdit, token: u64) {
        if let Err(limit) = self.ensure_doc(doc_id, None) {
            self.out.push(Effect::EditDone {
                token,
                doc: doc_id,
                result: Err(LocalEditError::Busy(limit)),
            });
            return;
        }
        let ready = self
            .docs
            .get(&doc_id)
            .is_some_and(|d| d.status == DocStatus::Ready);
        if ready {
            self.apply_edit(doc_id, edit, token);
        } else if let Some(state) = self.docs.get_mut(&doc_id) {
            state.waiting_edits.push((edit, token));
        }
        self.mark_idle_if_unused(doc_id);
    }

    fn mark_idle_if_unused(&mut self, doc_id: DocumentId) {
        let now = self.now;
        if let Some(state) = self.docs.get_mut(&doc_id)
            && state.sessions.is_empty()
            && state.idle_since.is_none()
        {
            state.idle_since = Some(now);
            self.idle.insert((now, doc_id));
        }
    }

    fn apply_edit(&mut self, doc_id: DocumentId, edit: LocalEdit, token: u64) {
        let Some(state) = self.docs.get_mut(&doc_id) else {
            return;
        };
        let before = state.doc.get_heads();
        let exists = !before.is_empty() || state.chunks > 0;
        let result = match edit {
            LocalEdit::Create(_) if exists => Err(LocalEditError::Exists(doc_id)),
            LocalEdit::Create(doc) => {
                state.doc = *doc;
                Ok(())
            }
            LocalEdit::Change(_) if !exists && self.config.role == EngineRole::Server => {
                Err(LocalEditError::NotFound(doc_id))
            }
            LocalEdit::Change(f) => {
                let mut scratch = state.doc.clone();
                match catch_unwind(AssertUnwindSafe(|| f(&mut scratch))) {
                    Ok(Ok(())) => {
                        state.doc = scratch;
                        Ok(())
                    }
                    Ok(Err(e)) => Err(LocalEditError::Failed(e)),
                    Err(_) => Err(LocalEditError::Failed("the edit panicked".into())),
                }
            }
        };
        if let Err(e) = result {
            self.out.push(Effect::EditDone {
                token,
                doc: doc_id,
                result: Err(e),
            });
            return;
        }
        let after = state.doc.get_heads();
        if before == after {
            // Nothing to store, but the heads may hold changes whose writes are in flight:
            // answer when the last of them is done, so the answer names only stored changes.
            match state.last_write {
                Some(last) if state.unstored > 0 => {
                    state.edits_in_flight.push((last, token, after))
                }
                _ => self.out.push(Effect::EditDone {
                    token,
                    doc: doc_id,
                    result: Ok(after),
                }),
            }
            return;
        }
        state.dirty = true;
        let bytes = state.doc.save_after(&before);
        let write = self.store_changes(doc_id, bytes);
        if let Some(state) = self.docs.get_mut(&doc_id) {
            state.edits_in_flight.push((write, token, after));
        }
    }

    fn on_subscribe(&mut self, doc_id: DocumentId) {
        if !self.subscribed.insert(doc_id) {
            return;
        }
        let conns: Vec<ConnId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.outbound && p.remote.is_some())
            .map(|(c, _)| *c)
            .collect();
        for conn in conns {
            self.open_session(conn, doc_id, Access::ReadWrite, WriteScope::Any, true);
        }
        if let Some(state) = self.docs.get_mut(&doc_id) {
            state.dirty = true;
        }
        self.process(doc_id);
    }

    fn on_unsubscribe(&mut self, doc_id: DocumentId) {
        if !self.subscribed.remove(&doc_id) {
            return;
        }
        let conns: Vec<ConnId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.outbound && p.sessions.contains_key(&doc_id))
            .map(|(c, _)| *c)
            .collect();
        for conn in conns {
            self.drop_session(conn, doc_id);
        }
    }

    fn on_access_changed(
        &mut self,
        doc: Option<DocumentId>,
        principal: Option<Principal>,
        access: &dyn AccessPolicy,
    ) {
        let mut affected: Vec<(ConnId, DocumentId)> = Vec::new();
        let mut changed: BTreeSet<DocumentId> = BTreeSet::new();
        if let Some(doc_id) = doc
            && let Some(state) = self.docs.get(&doc_id)
        {
            affected.extend(state.sessions.iter().map(|c| (*c, doc_id)));
        }
        if let Some(principal) = &principal {
            for (conn, peer) in &self.peers {
                if &peer.principal == principal {
                    affected.extend(peer.sessions.keys().map(|d| (*conn, *d)));
                }
            }
        }
        for (conn, doc_id) in affected {
            let Some(peer) = self.peers.get_mut(&conn) else {
                continue;
            };
            let now_allowed = access.access(&peer.principal, &doc_id);
            match now_allowed {
                Access::None => {
                    self.refuse(Some(conn), "access_withdrawn", doc_id.to_string());
                    self.drop_session(conn, doc_id);
                    self.send_unavailable(conn, doc_id);
                }
                other => {
                    let scope = access.write_scope(&peer.principal, &doc_id);
                    if let Some(session) = peer.sessions.get_mut(&doc_id) {
                        session.scope = scope;
                        if session.access != other {
                            session.set_access(other);
                            changed.insert(doc_id);
                        }
                    }
                }
            }
        }
        // A session whose mode changed starts a fresh exchange rather than wait for the
        // peer's next message: a peer told it was read-only sends nothing on its own, so
        // its offline changes would wait for the next reconnect.
        for doc_id in changed {
            if let Some(state) = self.docs.get_mut(&doc_id) {
                state.dirty = true;
            }
            self.announce(doc_id);
        }
    }

    // ---- eviction ----------------------------------------------------------------------

    fn on_tick(&mut self) {
        self.evict_idle(false);
        self.sleep_idle();
        // Documents grow while in use, past the budget their loads met.
        self.evict_for_memory();
    }

    /// Documents held as their saved bytes only.
    pub fn dormant_documents(&self) -> usize {
        self.dormant.len()
    }

    /// Reduces documents idle for `document_dormant_ms` to their saved bytes, at most
    /// [`SLEEPS_PER_TICK`] saves and [`SLEEP_BYTES_PER_TICK`] saved bytes per tick (on this
    /// thread). Walks the idle queue from
    /// where the last tick stopped, so the work is proportional to the documents that became
    /// idle since; one still busy writing when its turn came stays awake until evicted.
    fn sleep_idle(&mut self) {
        let Some(after) = self.config.document_dormant_ms else {
            return;
        };
        let deadline = self.now.saturating_sub(after);
        let from = match self.sleep_cursor {
            Some(cursor) => Bound::Excluded(cursor),
            None => Bound::Unbounded,
        };
        let due: Vec<(i64, DocumentId)> = self
            .idle
            .range((from, Bound::Unbounded))
            .take_while(|(since, _)| *since <= deadline)
            .take(SLEEPS_PER_TICK)
            .copied()
            .collect();
        let mut saved_bytes = 0;
        for (since, doc_id) in due {
            if saved_bytes >= SLEEP_BYTES_PER_TICK {
                break;
            }
            // The cursor passes every document looked at: one that stays awake (busy, or too
            // big) is not saved again until it is used and idle again.
            self.sleep_cursor = Some((since, doc_id));
            let Some(saved) = self
                .docs
                .get(&doc_id)
                .filter(|d| d.can_sleep(since))
                .map(|d| d.doc.save())
            else {
                continue;
            };
            saved_bytes += saved.len();
            if saved.len() > self.config.dormant_max_bytes {
                continue;
            }
            let Some(state) = self.remove_doc(&doc_id) else {
                continue;
            };
            let dormant = Dormant {
                saved: saved.into_boxed_slice(),
                idle_since: since,
                chunks: state.chunks,
            };
            self.memory += dormant.memory();
            self.dormant.insert(doc_id, dormant);
            self.stats.docs_slept_total += 1;
        }
    }

    /// Evicts documents idle for longer than the idle time (or, under memory pressure,
    /// the longest-idle one whatever its age). Pops from the front of the idle queue, so the
    /// work is proportional to what is evicted. Returns whether it evicted any.
    fn evict_idle(&mut self, pressure: bool) -> bool {
        let mut evicted = false;
        let deadline = self.now - self.config.document_idle_ms;
        let mut skipped = Vec::new();
        while let Some(&(since, doc_id)) = self.idle.first() {
            if since > deadline && !pressure {
                break;
            }
            self.idle.pop_first();
            if self
                .dormant
                .get(&doc_id)
                .is_some_and(|d| d.idle_since == since)
            {
                self.remove_dormant(&doc_id);
                self.stats.docs_evicted_total += 1;
                evicted = true;
                if pressure {
                    break;
                }
                continue;
            }
            let evictable = self.docs.get(&doc_id).is_some_and(|d| {
                d.sessions.is_empty()
                    && d.unstored == 0
                    && d.status == DocStatus::Ready
                    && d.waiting_edits.is_empty()
            });
            if evictable {
                self.remove_doc(&doc_id);
                self.stats.docs_evicted_total += 1;
                evicted = true;
                if pressure {
                    break;
                }
            } else if self
                .docs
                .get(&doc_id)
                .is_some_and(|d| d.sessions.is_empty())
            {
                // Still busy writing: look again later.
                skipped.push((since, doc_id));
            } else if let Some(d) = self.docs.get_mut(&doc_id) {
                d.idle_since = None;
            }
        }
        self.idle.extend(skipped);
        evicted
    }
}

/// Who a principal is, for refusals in the log.
fn describe(principal: &Principal) -> String {
    match principal {
        Principal::Device {
            device_id,
            technician,
        } => format!("device {device_id} ({technician})"),
        Principal::Desk { role } => format!("desk token ({role})"),
        Principal::Branch { branch_id } => format!("branch {branch_id}"),
        Principal::Server => "server".to_owned(),
    }
}

/// Loads stored chunks (a snapshot and incremental chunks, in any order) into a document,
/// with the snapshot to store in their place if changes stored without a dependency were
/// dropped.
///
/// Such orphans come from a write that failed while a later write of the same document,
/// already on its way, stored a change built on it (the edit it carried was answered with
/// the failure). automerge would queue them and apply them, unchecked and unannounced, the
/// day the missing change arrives from a peer, where they would look as if they had come
/// with it. They are dropped, and a snapshot without them replaces what is stored.
///
/// All of it runs inside `catch_unwind`: what storage hands back may be damaged, and
/// automerge can panic on a damaged document in `fork_at` and `save` as well as while
/// loading it (found by the `stored_doc` fuzzer); that refuses this load, never the engine.
fn load_chunks(
    strategy: LoadStrategy,
    chunks: &[Vec<u8>],
) -> Result<(Automerge, Option<Vec<u8>>), String> {
    let result = catch_unwind(AssertUnwindSafe(
        || -> Result<(Automerge, Option<Vec<u8>>), String> {
            let mut doc = strategy.load(chunks).map_err(|e| e.to_string())?;
            if doc.get_missing_deps(&[]).is_empty() {
                return Ok((doc, None));
            }
            // (`fork_at` keeps applied changes only; a save keeps the queue too.)
            if let Ok(rebuilt) = doc.fork_at(&doc.get_heads()) {
                doc = rebuilt;
            }
            let snapshot = doc.save();
            Ok((doc, Some(snapshot)))
        },
    ));
    match result {
        Ok(Ok(loaded)) => Ok(loaded),
        Ok(Err(e)) => Err(format!("stored document is corrupt: {e}")),
        Err(_) => Err("stored document is corrupt: automerge panicked loading it".into()),
    }
}

/// Which shard an engine is, of how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// A node with one engine: the engine is every shard.
    pub const ONE: Shard = Shard { index: 0, count: 1 };

    /// The shard that answers what every shard hears about a connection.
    pub fn is_home(&self) -> bool {
        self.index == 0
    }
}

#[cfg(test)]
mod tests {
    use automerge::transaction::Transactable;

    use super::*;
    use crate::sync::AllowAll;

    fn content(value: i64) -> Box<Automerge> {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        tx.put(automerge::ROOT, "k", value).expect("put");
        tx.commit();
        Box::new(doc)
    }

    /// Completes every write among `effects` and those that follow at `now`, as a store that
    /// never fails: the chunks written go to `stored`; returns the edits' answers by token.
    fn complete(
        engine: &mut Engine,
        effects: Vec<Effect>,
        now: i64,
        stored: &mut Vec<Vec<u8>>,
    ) -> BTreeMap<u64, Result<Vec<ChangeHash>, LocalEditError>> {
        let mut answers = BTreeMap::new();
        let mut pending = effects;
        while !pending.is_empty() {
            let mut next = Vec::new();
            for effect in pending {
                match effect {
                    Effect::Write { id, op } => {
                        match op {
                            WriteOp::AppendChanges { bytes, .. } => stored.push(bytes),
                            WriteOp::Compact { snapshot, .. } => *stored = vec![snapshot],
                            WriteOp::PutSyncState { .. } => {}
                        }
                        next.extend(engine.handle(
                            Input::WriteDone { id, result: Ok(()) },
                            now,
                            &AllowAll,
                        ));
                    }
                    Effect::EditDone { token, result, .. } => {
                        answers.insert(token, result);
                    }
                    _ => {}
                }
            }
            pending = next;
        }
        answers
    }

    /// Issue 17: a dormant document whose saved bytes do not load again is dropped with a
    /// refusal that says so and loaded from storage, which holds every change of it; the
    /// edit that woke it waits for that load and applies on top.
    #[test]
    fn a_dormant_document_that_does_not_wake_is_loaded_from_storage() {
        let mut config = EngineConfig::new(EngineRole::Server, "server");
        config.document_dormant_ms = Some(10);
        let mut engine = Engine::new(config);
        let doc = DocumentId::from_bytes([9; 16]);
        let mut stored = Vec::new();
        let create = Input::Edit {
            doc,
            edit: LocalEdit::Create(content(1)),
            token: 1,
        };
        let mut effects = engine.handle(create, 0, &AllowAll);
        let found_nothing = Input::DocLoaded {
            doc,
            chunks: Ok(None),
        };
        effects.extend(engine.handle(found_nothing, 0, &AllowAll));
        let answers = complete(&mut engine, effects, 0, &mut stored);
        assert!(answers[&1].is_ok(), "{answers:?}");
        engine.handle(Input::Tick, 20, &AllowAll);
        assert_eq!(engine.dormant_documents(), 1);

        engine.dormant.get_mut(&doc).expect("dormant").saved =
            Box::new([0x85, 0x6f, 0x4a, 0x83, 1, 2, 3]);
        let change = LocalEdit::Change(Box::new(|d: &mut Automerge| {
            let mut tx = d.transaction();
            tx.put(automerge::ROOT, "after", 2)
                .map_err(|e| e.to_string())?;
            tx.commit();
            Ok(())
        }));
        let effects = engine.handle(
            Input::Edit {
                doc,
                edit: change,
                token: 2,
            },
            30,
            &AllowAll,
        );
        assert!(
            effects.iter().any(|e| matches!(
                e,
                Effect::Refused {
                    reason: "dormant_load_failed",
                    ..
                }
            )),
            "the failed wake is reported: {effects:?}"
        );
        assert!(
            effects
                .iter()
                .any(|e| matches!(e, Effect::LoadDoc { doc: d } if *d == doc)),
            "and the document is loaded from storage: {effects:?}"
        );
        assert_eq!(engine.dormant_documents(), 0);
        assert_eq!(engine.loaded_documents(), 1);

        let loaded = Input::DocLoaded {
            doc,
            chunks: Ok(Some(stored.clone())),
        };
        let effects = engine.handle(loaded, 30, &AllowAll);
        let answers = complete(&mut engine, effects, 30, &mut stored);
        assert!(answers[&2].is_ok(), "{answers:?}");
        let held = engine.document(&doc).expect("ready");
        assert!(held.get(automerge::ROOT, "k").expect("read").is_some());
        assert!(held.get(automerge::ROOT, "after").expect("read").is_some());
    }

    /// Two writers (the desk and the outbox publishing the same complaint) both found the
    /// document missing and both create it while the load is still out: each gets an answer,
    /// the first creation wins and the second is told the document exists.
    #[test]
    fn every_edit_waiting_on_a_load_that_finds_nothing_is_answered() {
        let mut engine = Engine::new(EngineConfig::new(EngineRole::Server, "server"));
        let doc = DocumentId::from_bytes([7; 16]);
        let mut effects = Vec::new();
        for (token, edit) in [
            (1, LocalEdit::Create(content(1))),
            (2, LocalEdit::Create(content(2))),
            (
                3,
                LocalEdit::Change(Box::new(|d: &mut Automerge| {
                    let mut tx = d.transaction();
                    tx.put(automerge::ROOT, "later", 3)
                        .map_err(|e| e.to_string())?;
                    tx.commit();
                    Ok(())
                })),
            ),
        ] {
            effects.extend(engine.handle(Input::Edit { doc, edit, token }, 0, &AllowAll));
        }
        effects.extend(engine.handle(
            Input::DocLoaded {
                doc,
                chunks: Ok(None),
            },
            0,
            &AllowAll,
        ));
        let answers = complete(&mut engine, effects, 0, &mut Vec::new());
        assert_eq!(answers.len(), 3, "every edit answered: {answers:?}");
        assert!(answers[&1].is_ok(), "{:?}", answers[&1]);
        assert!(
            matches!(answers[&2], Err(LocalEditError::Exists(_))),
            "{:?}",
            answers[&2]
        );
        assert!(answers[&3].is_ok(), "{:?}", answers[&3]);
        assert_eq!(engine.loaded_documents(), 1);
    }
}

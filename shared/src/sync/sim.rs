//! Deterministic simulation of the sync engine: one server engine and a few client engines,
//! a network that delays frames, reorders them across connections and breaks connections,
//! and storage per node that completes writes late (in order) and loses the ones in flight
//! when its node crashes. A crashed node restarts from what its storage completed, nothing
//! else.
//!
//! Everything runs on one thread from one seed (a xorshift generator; proptest picks the
//! seeds), with simulated time, so a failing seed replays exactly: proptest prints it and
//! keeps it in `proptest-regressions/`.
//!
//! Whatever the test, the simulator checks on every effect:
//! - the durability barrier: every head named in a sync message a node sends, in a
//!   `DocChanged` and in an `EditDone` is in that node's completed writes at that moment;
//! - a stored sync state names only stored changes;
//! - no document is loaded while writes of it are in flight (the load would miss them);
//! - every `Input::Edit` is answered exactly once (unless its node crashed first);
//! - writes complete in the order they were emitted, with the ids the engine gave them.
//!
//! `SIM_TRACE=1` prints every input of a run; `PROPTEST_CASES` raises the case counts for a
//! soak run.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use automerge::sync::{Have, Message as AmSyncMessage, State as AmSyncState, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ChangeHash, ROOT, ReadDoc};
use proptest::collection::vec;
use proptest::prelude::*;

use super::{
    Access, AccessPolicy, AllowAll, CloseCode, ConnId, Effect, EngineConfig, EngineRole, Input,
    LocalEdit, LocalEditError, Principal, Shards, WriteId, WriteOp, WriteScope,
};
use crate::authority::{Allow, DocKind, PathRule, Reach, Seg, WriteTable, Writer};
use crate::ids::{DeviceId, DocumentId, TechnicianId};
use crate::protocol::message::{JoinMessage, PeerId, PeerMetadata, StorageId, SyncMessage};
use crate::protocol::sync_check::write_uleb as uleb;
use crate::protocol::{self, Message};

/// The server is node 0; clients are nodes 1..=n.
const SERVER: usize = 0;
const SERVER_PEER_ID: &str = "edge-server";
/// Events a run may take to settle once the chaos stops; more means a livelock.
const QUIET_LIMIT: usize = 200_000;

// ---- randomness ------------------------------------------------------------------------

/// xorshift64*: tiny, fast and the same on every platform.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        // The state must not be zero; the multiplication spreads neighbouring seeds apart.
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    /// A number in `0..=max`.
    fn upto(&mut self, max: i64) -> i64 {
        self.below(max.max(0) as u64 + 1) as i64
    }

    fn per_mille(&mut self, p: u64) -> bool {
        self.below(1000) < p
    }

    fn bytes16(&mut self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.next().to_le_bytes());
        out[8..].copy_from_slice(&self.next().to_le_bytes());
        out
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        (!items.is_empty()).then(|| items[self.below(items.len() as u64) as usize])
    }
}

// ---- the world ---------------------------------------------------------------------------

/// Which device may do what with which document: the server's records, in the test.
#[derive(Debug, Default)]
struct Policy(BTreeMap<(String, DocumentId), Access>);

impl Policy {
    fn grant(&mut self, device: &str, doc: DocumentId, access: Access) {
        self.0.insert((device.to_owned(), doc), access);
    }

    fn of(&self, device: &str, doc: DocumentId) -> Access {
        self.0
            .get(&(device.to_owned(), doc))
            .copied()
            .unwrap_or(Access::None)
    }
}

/// The simulated devices may write any root key (the workload's `put`s) and nothing deeper:
/// every change they send goes through the engine's checked path (decoded, ordered, held for
/// its dependencies, checked op by op), under the same chaos as the rest.
static SIM_TABLE: WriteTable = WriteTable {
    kind: DocKind::Job,
    rules: &[PathRule {
        path: &[Seg::Any],
        reach: Reach::Exactly,
        writers: &[Writer::Device],
        allow: Allow::Write,
        why: "a simulated device writes root keys",
    }],
    otherwise: "nothing else",
};

impl AccessPolicy for Policy {
    fn access(&self, who: &Principal, doc: &DocumentId) -> Access {
        match who {
            Principal::Device { device_id, .. } => self.of(device_id.as_str(), *doc),
            _ => Access::None,
        }
    }

    fn write_scope(&self, _who: &Principal, _doc: &DocumentId) -> WriteScope {
        WriteScope::Table(&SIM_TABLE, Writer::Device)
    }
}

/// How hostile the world is.
#[derive(Debug, Clone)]
struct Chaos {
    /// Most milliseconds a frame travels.
    net_delay: i64,
    /// Most milliseconds a write waits before it completes (after the one before it).
    write_delay: i64,
    load_delay: i64,
    reconnect_delay: i64,
    /// Per mille of frame deliveries that break the connection instead (while turbulent).
    break_per_mille: u64,
    /// Per mille of writes that fail (while turbulent).
    write_fail_per_mille: u64,
}

impl Chaos {
    fn calm() -> Self {
        Self {
            net_delay: 5,
            write_delay: 5,
            load_delay: 5,
            reconnect_delay: 10,
            break_per_mille: 0,
            write_fail_per_mille: 0,
        }
    }
}

/// What survives a crash: completed writes only.
#[derive(Debug, Default)]
struct Disk {
    docs: BTreeMap<DocumentId, Vec<Vec<u8>>>,
    /// Bumped by every completed content write of a document (keys the durable-doc cache).
    versions: BTreeMap<DocumentId, u64>,
    sync_states: BTreeMap<(DocumentId, StorageId), Vec<u8>>,
}

impl Disk {
    fn apply(&mut self, op: WriteOp) {
        match op {
            WriteOp::AppendChanges { doc, bytes } => {
                self.docs.entry(doc).or_default().push(bytes);
                *self.versions.entry(doc).or_default() += 1;
            }
            WriteOp::Compact { doc, snapshot } => {
                self.docs.insert(doc, vec![snapshot]);
                *self.versions.entry(doc).or_default() += 1;
            }
            WriteOp::PutSyncState {
                doc,
                storage_id,
                state,
            } => {
                self.sync_states.insert((doc, storage_id), state);
            }
        }
    }
}

struct Node {
    config: EngineConfig,
    /// The node's engine, split into shards by document as the server's hub splits it (one
    /// shard: the engine alone).
    engine: Shards,
    shards: usize,
    disk: Disk,
    /// Bumped by a crash: completions of an older generation are lost.
    generation: u64,
    /// When the last write in flight completes, so that writes complete in order.
    last_write_due: i64,
    pending_writes: VecDeque<(WriteId, WriteOp)>,
    /// Clients: the device the server authenticates them as.
    device: Option<String>,
    /// Clients: what the app keeps in sync (re-subscribed after a crash).
    subscriptions: BTreeSet<DocumentId>,
    /// Clients: the current connection, if any.
    conn: Option<ConnId>,
    /// Clients: whether the app wants to be connected.
    online: bool,
    /// Edits asked for in this generation and not answered yet.
    open_edits: BTreeSet<u64>,
    /// Heads of every edit answered `Ok` (they must stay durable).
    acked: Vec<(DocumentId, Vec<ChangeHash>)>,
    edit_errors: Vec<LocalEditError>,
    refusals: Vec<(Option<ConnId>, &'static str, String)>,
    unavailable: Vec<DocumentId>,
    /// `Delivered` effects seen (each checked against the server's disk).
    delivered: u64,
    /// The heads of the last `Delivered` per document.
    last_delivered: BTreeMap<DocumentId, Vec<ChangeHash>>,
    closes: Vec<(ConnId, CloseCode, String)>,
    /// Every `LoadDoc` this node asked for.
    loads: Vec<DocumentId>,
    /// Every `LoadSyncState` this node asked for.
    state_loads: Vec<DocumentId>,
    /// Documents with a failed write.
    failed_docs: BTreeSet<DocumentId>,
}

impl Node {
    fn new(config: EngineConfig, shards: usize, device: Option<String>) -> Self {
        Self {
            engine: Shards::new(&config, shards),
            shards,
            config,
            disk: Disk::default(),
            generation: 0,
            last_write_due: 0,
            pending_writes: VecDeque::new(),
            device,
            subscriptions: BTreeSet::new(),
            conn: None,
            online: true,
            open_edits: BTreeSet::new(),
            acked: Vec::new(),
            edit_errors: Vec::new(),
            refusals: Vec::new(),
            unavailable: Vec::new(),
            delivered: 0,
            last_delivered: BTreeMap::new(),
            closes: Vec::new(),
            loads: Vec::new(),
            state_loads: Vec::new(),
            failed_docs: BTreeSet::new(),
        }
    }

    fn refused(&self, reason: &str) -> usize {
        self.refusals.iter().filter(|r| r.1 == reason).count()
    }
}

/// One WebSocket connection between the server and a client engine or a raw peer that the
/// test drives by hand.
struct Conn {
    /// The client node, or `None` for a raw peer.
    client: Option<usize>,
    /// Frames still travel; false once broken or closed.
    alive: bool,
    /// Whether each side still thinks the connection is up.
    server_open: bool,
    client_open: bool,
    /// When the last frame in each direction arrives, so each direction is FIFO.
    due_to_server: i64,
    due_to_client: i64,
    /// Raw peers: what the server sent them.
    inbox: Vec<Message>,
}

#[derive(Debug)]
enum Wire {
    Frame(Vec<u8>),
    /// The sender's close frame: the connection ends when it arrives.
    Closed,
}

#[derive(Debug)]
enum Event {
    Deliver {
        conn: ConnId,
        to_server: bool,
        wire: Wire,
    },
    /// A side learns that its connection broke.
    Disconnect {
        conn: ConnId,
        to_server: bool,
    },
    WriteDone {
        node: usize,
        generation: u64,
        id: WriteId,
    },
    DocLoaded {
        node: usize,
        generation: u64,
        doc: DocumentId,
    },
    StateLoaded {
        node: usize,
        generation: u64,
        doc: DocumentId,
        storage_id: StorageId,
    },
    Reconnect {
        client: usize,
        generation: u64,
    },
}

/// A frame an engine sent, kept when `Sim::record` is on.
#[derive(Debug)]
struct Sent {
    from: usize,
    conn: ConnId,
    bytes: Vec<u8>,
}

struct Sim {
    seed: u64,
    rng: Rng,
    now: i64,
    seq: u64,
    events: BTreeMap<(i64, u64), Event>,
    nodes: Vec<Node>,
    conns: BTreeMap<ConnId, Conn>,
    next_conn: u64,
    next_token: u64,
    policy: Policy,
    chaos: Chaos,
    /// Chaos breaks connections and fails writes only while this is on.
    turbulent: bool,
    /// Every change hash the server named in the heads of a sync message it sent.
    announced: BTreeMap<DocumentId, BTreeSet<ChangeHash>>,
    durable_cache: HashMap<(usize, DocumentId), (u64, Automerge)>,
    record: bool,
    sent: Vec<Sent>,
    /// `SIM_TRACE=1`: print every input, to follow a failing seed.
    trace: bool,
    /// A digest of every frame sent and write issued, with its time: equal for two runs of
    /// one seed.
    digest: u64,
}

/// Knobs of a simulated deployment.
#[derive(Debug, Clone)]
struct Setup {
    clients: usize,
    chaos: Chaos,
    document_idle_ms: i64,
    /// The server's `document_dormant_ms` (issue 17): idle documents kept as saved bytes.
    document_dormant_ms: Option<i64>,
    /// The server's `dormant_max_bytes`.
    dormant_max_bytes: usize,
    /// The server's `max_document_memory` (issue 17): a byte budget for its documents.
    max_document_memory: Option<usize>,
    compact_after_chunks: usize,
    /// Shards of the server's engine (issue 17; the hub runs one per core).
    shards: usize,
}

impl Setup {
    fn new(clients: usize) -> Self {
        Self {
            clients,
            chaos: Chaos::calm(),
            document_idle_ms: 1_000,
            document_dormant_ms: None,
            dormant_max_bytes: 16 * 1024,
            max_document_memory: None,
            compact_after_chunks: 4,
            shards: 1,
        }
    }

    /// The server split into one to three shards, as the seed says: every property runs on
    /// one engine and on several.
    fn sharded_by(mut self, seed: u64) -> Self {
        self.shards = 1 + (seed % 3) as usize;
        self
    }
}

fn device_name(client: usize) -> String {
    format!("dev-{client}")
}

fn device_principal(device: &str) -> Principal {
    Principal::Device {
        device_id: DeviceId::new(device).expect("test device ids are valid"),
        technician: TechnicianId::new(format!("tech-of-{device}"))
            .expect("test technician ids are valid"),
    }
}

fn content_doc(op: &WriteOp) -> Option<DocumentId> {
    match op {
        WriteOp::AppendChanges { doc, .. } | WriteOp::Compact { doc, .. } => Some(*doc),
        WriteOp::PutSyncState { .. } => None,
    }
}

fn load_all(chunks: &[Vec<u8>]) -> Automerge {
    let mut doc = Automerge::new();
    for chunk in chunks {
        doc.load_incremental(chunk)
            .expect("the engine writes chunks automerge can load");
    }
    doc
}

/// The automerge sync message inside a `sync` or `request` frame.
fn sync_payload(bytes: &[u8]) -> Option<(DocumentId, AmSyncMessage)> {
    match protocol::decode(bytes, &protocol::Limits::default()) {
        Ok(Message::Sync(p) | Message::Request(p)) => {
            let message =
                AmSyncMessage::decode(&p.data).expect("the engine sends decodable sync messages");
            Some((p.document_id, message))
        }
        Ok(_) => None,
        Err(e) => panic!("an engine sent a frame the codec rejects: {e}"),
    }
}

fn trace_input(now: i64, node: usize, input: &Input) {
    match input {
        Input::Frame { conn, bytes } => {
            let what = match protocol::decode(bytes, &protocol::Limits::default()) {
                Ok(Message::Sync(p) | Message::Request(p)) => {
                    match AmSyncMessage::decode(&p.data) {
                        Ok(m) => format!(
                            "sync {} heads {} need {} changes {}",
                            p.document_id,
                            m.heads.len(),
                            m.need.len(),
                            m.changes.len()
                        ),
                        Err(e) => format!("sync {} undecodable: {e}", p.document_id),
                    }
                }
                Ok(other) => other.message_type().to_string(),
                Err(e) => format!("bad frame: {e}"),
            };
            eprintln!("{now:>7} node {node} <- {conn:?} {what}");
        }
        Input::Edit { doc, edit, token } => {
            eprintln!("{now:>7} node {node} edit {token} {doc} {edit:?}")
        }
        other => eprintln!("{now:>7} node {node} {other:?}"),
    }
}

/// A document made by `actor` with `changes` changes, one key each.
fn new_document(actor: [u8; 16], changes: usize) -> Automerge {
    let mut doc = Automerge::new().with_actor(ActorId::from(actor));
    for i in 0..changes.max(1) {
        let mut tx = doc.transaction();
        tx.put(ROOT, format!("field-{i}"), i as i64)
            .expect("put on a fresh document");
        tx.commit();
    }
    doc
}

/// An edit that sets `key` to `value` as a fresh actor (a node that crashed and lost an
/// unstored change must not reuse its actor and sequence number for different content).
fn put_edit(actor: [u8; 16], key: String, value: i64) -> LocalEdit {
    LocalEdit::Change(Box::new(move |doc: &mut Automerge| {
        doc.set_actor(ActorId::from(actor));
        let mut tx = doc.transaction();
        tx.put(ROOT, key, value).map_err(|e| e.to_string())?;
        tx.commit();
        Ok(())
    }))
}

impl Sim {
    fn new(seed: u64, setup: Setup) -> Self {
        let engine_config = |role, peer_id: String, storage_id: String| {
            let mut config = EngineConfig::new(role, peer_id);
            config.storage_id = Some(storage_id);
            config.document_idle_ms = setup.document_idle_ms;
            if role == EngineRole::Server {
                config.document_dormant_ms = setup.document_dormant_ms;
                config.dormant_max_bytes = setup.dormant_max_bytes;
                config.max_document_memory = setup.max_document_memory;
            }
            config.compact_after_chunks = setup.compact_after_chunks;
            config
        };
        let mut nodes = vec![Node::new(
            engine_config(
                EngineRole::Server,
                SERVER_PEER_ID.into(),
                "edge-storage".into(),
            ),
            setup.shards,
            None,
        )];
        for client in 1..=setup.clients {
            let device = device_name(client);
            nodes.push(Node::new(
                engine_config(
                    EngineRole::Client,
                    device.clone(),
                    format!("storage-{device}"),
                ),
                1,
                Some(device),
            ));
        }
        Self {
            seed,
            rng: Rng::new(seed),
            now: 0,
            seq: 0,
            events: BTreeMap::new(),
            nodes,
            conns: BTreeMap::new(),
            next_conn: 1,
            next_token: 1,
            policy: Policy::default(),
            chaos: setup.chaos,
            turbulent: false,
            announced: BTreeMap::new(),
            durable_cache: HashMap::new(),
            record: false,
            sent: Vec::new(),
            trace: std::env::var_os("SIM_TRACE").is_some(),
            digest: 0xcbf2_9ce4_8422_2325,
        }
    }

    fn clients(&self) -> std::ops::RangeInclusive<usize> {
        1..=self.nodes.len() - 1
    }

    fn server(&self) -> &Shards {
        &self.nodes[SERVER].engine
    }

    fn schedule(&mut self, at: i64, event: Event) {
        self.seq += 1;
        self.events.insert((at.max(self.now), self.seq), event);
    }

    // ---- driving engines -------------------------------------------------------------------

    fn feed(&mut self, node: usize, input: Input) {
        if self.trace {
            trace_input(self.now, node, &input);
        }
        let effects = if node == SERVER {
            self.nodes[node]
                .engine
                .handle(input, self.now, &self.policy)
        } else {
            self.nodes[node].engine.handle(input, self.now, &AllowAll)
        };
        for effect in effects {
            self.perform(node, effect);
        }
    }

    /// Folds bytes into the run's digest (FNV-1a).
    fn fold(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.digest = (self.digest ^ u64::from(*byte)).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn perform(&mut self, node: usize, effect: Effect) {
        self.fold(&self.now.to_le_bytes());
        self.fold(&node.to_le_bytes());
        match &effect {
            Effect::Send { conn, bytes } => {
                self.fold(&conn.0.to_le_bytes());
                self.fold(bytes);
            }
            Effect::Write { id, op } => {
                self.fold(&id.0.to_le_bytes());
                if let WriteOp::AppendChanges { bytes, .. }
                | WriteOp::Compact {
                    snapshot: bytes, ..
                } = op
                {
                    self.fold(bytes);
                }
            }
            _ => {}
        }
        match effect {
            Effect::Send { conn, bytes } => self.on_send(node, conn, bytes),
            Effect::Close { conn, code, reason } => {
                self.nodes[node].closes.push((conn, code, reason));
                self.on_close(node, conn);
            }
            Effect::LoadDoc { doc } => {
                // A load reads completed writes only: one issued while writes of the
                // document are in flight would miss them.
                let in_flight = self.nodes[node]
                    .pending_writes
                    .iter()
                    .any(|(_, op)| content_doc(op) == Some(doc));
                assert!(
                    !in_flight,
                    "seed {}: node {node} loads {doc} while writes of it are in flight",
                    self.seed
                );
                self.nodes[node].loads.push(doc);
                let at = self.now + self.rng.upto(self.chaos.load_delay);
                let generation = self.nodes[node].generation;
                self.schedule(
                    at,
                    Event::DocLoaded {
                        node,
                        generation,
                        doc,
                    },
                );
            }
            Effect::LoadSyncState { doc, storage_id } => {
                self.nodes[node].state_loads.push(doc);
                let at = self.now + self.rng.upto(self.chaos.load_delay);
                let generation = self.nodes[node].generation;
                self.schedule(
                    at,
                    Event::StateLoaded {
                        node,
                        generation,
                        doc,
                        storage_id,
                    },
                );
            }
            Effect::Write { id, op } => {
                let delay = self.rng.upto(self.chaos.write_delay);
                let n = &mut self.nodes[node];
                let due = n.last_write_due.max(self.now + delay);
                n.last_write_due = due;
                n.pending_writes.push_back((id, op));
                let generation = n.generation;
                self.schedule(
                    due,
                    Event::WriteDone {
                        node,
                        generation,
                        id,
                    },
                );
            }
            Effect::DocChanged { doc, heads } => {
                for head in &heads {
                    assert!(
                        self.durable_has(node, doc, head),
                        "seed {}: node {node} reported DocChanged {doc} with head {head} \
                         that is not stored",
                        self.seed
                    );
                }
            }
            Effect::EditDone { token, doc, result } => {
                assert!(
                    self.nodes[node].open_edits.remove(&token),
                    "seed {}: node {node} answered edit {token} twice or never got it",
                    self.seed
                );
                match result {
                    Ok(heads) => {
                        for head in &heads {
                            assert!(
                                self.durable_has(node, doc, head),
                                "seed {}: node {node} answered an edit of {doc} with head \
                                 {head} that is not stored",
                                self.seed
                            );
                        }
                        self.nodes[node].acked.push((doc, heads));
                    }
                    Err(e) => self.nodes[node].edit_errors.push(e),
                }
            }
            Effect::DocUnavailable { doc, .. } => self.nodes[node].unavailable.push(doc),
            // The server is node 0; what it confirms holding must be on its disk.
            Effect::Delivered { doc, heads, .. } => {
                for head in &heads {
                    assert!(
                        self.durable_has(SERVER, doc, head),
                        "seed {}: node {node} was told the server holds {head} of {doc}, \
                         which the server has not stored",
                        self.seed
                    );
                }
                self.nodes[node].delivered += 1;
                self.nodes[node].last_delivered.insert(doc, heads);
            }
            Effect::NewDocument { doc, .. } => {
                panic!("seed {}: the edge server took in {doc}", self.seed)
            }
            Effect::Refused {
                conn,
                reason,
                detail,
            } => self.nodes[node].refusals.push((conn, reason, detail)),
        }
    }

    /// The durability barrier, checked at the moment a frame leaves its engine.
    fn on_send(&mut self, node: usize, conn: ConnId, bytes: Vec<u8>) {
        if let Some((doc, message)) = sync_payload(&bytes) {
            for head in &message.heads {
                assert!(
                    self.durable_has(node, doc, head),
                    "seed {}: node {node} sent heads naming {head} of {doc} before storing it",
                    self.seed
                );
            }
            if node == SERVER {
                self.announced
                    .entry(doc)
                    .or_default()
                    .extend(message.heads.iter().copied());
            }
        }
        if self.record {
            self.sent.push(Sent {
                from: node,
                conn,
                bytes: bytes.clone(),
            });
        }
        let to_server = node != SERVER;
        self.transmit(conn, to_server, Wire::Frame(bytes));
    }

    /// Puts a frame (or a close) on the wire of `conn`, behind what that direction already
    /// carries.
    fn transmit(&mut self, conn: ConnId, to_server: bool, wire: Wire) {
        let delay = self.rng.upto(self.chaos.net_delay);
        let now = self.now;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let sender_open = if to_server {
            c.client_open
        } else {
            c.server_open
        };
        if !c.alive || (!sender_open && matches!(wire, Wire::Frame(_))) {
            return;
        }
        let due = if to_server {
            &mut c.due_to_server
        } else {
            &mut c.due_to_client
        };
        *due = (*due).max(now + delay);
        let at = *due;
        self.schedule(
            at,
            Event::Deliver {
                conn,
                to_server,
                wire,
            },
        );
    }

    fn on_close(&mut self, node: usize, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let to_server = node != SERVER;
        if to_server {
            c.client_open = false;
        } else {
            c.server_open = false;
        }
        self.transmit(conn, to_server, Wire::Closed);
        if node != SERVER {
            self.schedule_reconnect(node);
        }
    }

    fn schedule_reconnect(&mut self, client: usize) {
        let at = self.now + 1 + self.rng.upto(self.chaos.reconnect_delay);
        let generation = self.nodes[client].generation;
        self.schedule(at, Event::Reconnect { client, generation });
    }

    /// Takes `client` offline and breaks its connection (it does not reconnect until
    /// brought online and connected again).
    fn go_offline(&mut self, client: usize) {
        self.nodes[client].online = false;
        let conn = self.nodes[client].conn.expect("connected");
        self.break_conn(conn);
    }

    /// Breaks a connection: frames in flight are lost and each side learns it soon.
    fn break_conn(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.alive = false;
        let sides = [(true, c.server_open), (false, c.client_open)];
        for (to_server, open) in sides {
            if open {
                let at = self.now + self.rng.upto(self.chaos.net_delay);
                self.schedule(at, Event::Disconnect { conn, to_server });
            }
        }
    }

    fn handle_event(&mut self, event: Event) {
        match event {
            Event::Deliver {
                conn,
                to_server,
                wire,
            } => self.deliver(conn, to_server, wire),
            Event::Disconnect { conn, to_server } => {
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                if to_server && c.server_open {
                    c.server_open = false;
                    self.feed(SERVER, Input::Disconnected { conn });
                } else if !to_server && c.client_open {
                    c.client_open = false;
                    if let Some(client) = c.client {
                        self.feed(client, Input::Disconnected { conn });
                        self.schedule_reconnect(client);
                    }
                }
            }
            Event::WriteDone {
                node,
                generation,
                id,
            } => {
                if self.nodes[node].generation != generation {
                    return;
                }
                let fail = self.turbulent && self.rng.per_mille(self.chaos.write_fail_per_mille);
                let n = &mut self.nodes[node];
                let (queued, op) = n
                    .pending_writes
                    .pop_front()
                    .expect("a write completes that was emitted");
                assert_eq!(queued, id, "seed {}: writes complete in order", self.seed);
                let stored_state = match &op {
                    WriteOp::PutSyncState { doc, state, .. } if !fail => {
                        Some((*doc, state.clone()))
                    }
                    _ => None,
                };
                let result = if fail {
                    if let Some(doc) = content_doc(&op) {
                        n.failed_docs.insert(doc);
                    }
                    Err("simulated disk failure".to_owned())
                } else {
                    n.disk.apply(op);
                    Ok(())
                };
                // A stored sync state says "we share these heads": they must be stored too,
                // unless a failed write of the document took them away (the engine recovers
                // from that through the peer's `need`).
                if let Some((doc, state)) = stored_state
                    && !self.nodes[node].failed_docs.contains(&doc)
                {
                    let state =
                        AmSyncState::decode(&state).expect("the engine stores valid sync states");
                    for head in &state.shared_heads {
                        assert!(
                            self.durable_has(node, doc, head),
                            "seed {}: node {node} stored a sync state for {doc} naming {head}, \
                             which it has not stored",
                            self.seed
                        );
                    }
                }
                self.feed(node, Input::WriteDone { id, result });
            }
            Event::DocLoaded {
                node,
                generation,
                doc,
            } => {
                if self.nodes[node].generation != generation {
                    return;
                }
                let chunks = self.nodes[node].disk.docs.get(&doc).cloned();
                self.feed(
                    node,
                    Input::DocLoaded {
                        doc,
                        chunks: Ok(chunks),
                    },
                );
            }
            Event::StateLoaded {
                node,
                generation,
                doc,
                storage_id,
            } => {
                if self.nodes[node].generation != generation {
                    return;
                }
                let state = self.nodes[node]
                    .disk
                    .sync_states
                    .get(&(doc, storage_id.clone()))
                    .cloned();
                self.feed(
                    node,
                    Input::SyncStateLoaded {
                        doc,
                        storage_id,
                        state,
                    },
                );
            }
            Event::Reconnect { client, generation } => {
                let n = &self.nodes[client];
                let connected = n
                    .conn
                    .and_then(|c| self.conns.get(&c))
                    .is_some_and(|c| c.client_open);
                if n.generation == generation && n.online && !connected {
                    self.connect(client);
                }
            }
        }
    }

    fn deliver(&mut self, conn: ConnId, to_server: bool, wire: Wire) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let open = if to_server {
            c.server_open
        } else {
            c.client_open
        };
        if !c.alive || !open {
            return;
        }
        match wire {
            Wire::Frame(bytes) => {
                if self.turbulent && self.rng.per_mille(self.chaos.break_per_mille) {
                    self.break_conn(conn);
                    return;
                }
                if to_server {
                    self.feed(SERVER, Input::Frame { conn, bytes });
                } else if let Some(client) = c.client {
                    self.feed(client, Input::Frame { conn, bytes });
                } else {
                    let message = protocol::decode(&bytes, &protocol::Limits::default())
                        .expect("the server sends frames the codec accepts");
                    c.inbox.push(message);
                }
            }
            Wire::Closed => {
                c.alive = false;
                if to_server {
                    c.server_open = false;
                    self.feed(SERVER, Input::Disconnected { conn });
                } else {
                    c.client_open = false;
                    if let Some(client) = c.client {
                        self.feed(client, Input::Disconnected { conn });
                        self.schedule_reconnect(client);
                    }
                }
            }
        }
    }

    /// Handles the next event; false when there is none.
    fn step(&mut self) -> bool {
        let Some(((at, _), event)) = self.events.pop_first() else {
            return false;
        };
        self.now = self.now.max(at);
        self.handle_event(event);
        self.check_memory_counts();
        true
    }

    /// Every engine's running count of what its documents take (`max_document_memory`)
    /// equals a count afresh: no path that loads, changes, sleeps or drops a document
    /// forgets to count it.
    fn check_memory_counts(&self) {
        for (index, node) in self.nodes.iter().enumerate() {
            for engine in node.engine.engines() {
                assert_eq!(
                    engine.document_memory(),
                    engine.document_memory_recounted(),
                    "node {index}: the running count of document memory drifted at {}",
                    self.now
                );
            }
        }
    }

    /// Stops the chaos and runs until nothing is left to happen.
    fn quiesce(&mut self) {
        self.turbulent = false;
        for client in self.clients() {
            if self.nodes[client].online {
                self.schedule_reconnect(client);
            }
        }
        self.run_until_quiet();
    }

    fn run_until_quiet(&mut self) {
        for _ in 0..QUIET_LIMIT {
            if !self.step() {
                return;
            }
        }
        panic!(
            "seed {}: still busy after {QUIET_LIMIT} events (a livelock?)",
            self.seed
        );
    }

    // ---- what the world does ---------------------------------------------------------------

    fn connect(&mut self, client: usize) -> ConnId {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        self.conns.insert(
            conn,
            Conn {
                client: Some(client),
                alive: true,
                server_open: true,
                client_open: true,
                due_to_server: self.now,
                due_to_client: self.now,
                inbox: Vec::new(),
            },
        );
        self.nodes[client].conn = Some(conn);
        let device = self.nodes[client]
            .device
            .clone()
            .expect("clients have a device");
        self.feed(
            SERVER,
            Input::Connected {
                conn,
                principal: device_principal(&device),
            },
        );
        self.feed(
            client,
            Input::Connected {
                conn,
                principal: Principal::Server,
            },
        );
        conn
    }

    /// A connection whose client side the test plays by hand; it has joined as `device`.
    fn raw_connect(&mut self, device: &str) -> ConnId {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        self.conns.insert(
            conn,
            Conn {
                client: None,
                alive: true,
                server_open: true,
                client_open: true,
                due_to_server: self.now,
                due_to_client: self.now,
                inbox: Vec::new(),
            },
        );
        self.feed(
            SERVER,
            Input::Connected {
                conn,
                principal: device_principal(device),
            },
        );
        let join = Message::Join(JoinMessage {
            sender_id: PeerId::new(device),
            supported_protocol_versions: vec![protocol::PROTOCOL_VERSION.to_owned()],
            peer_metadata: PeerMetadata::default(),
        });
        self.raw_send(conn, &join);
        conn
    }

    fn raw_send(&mut self, conn: ConnId, message: &Message) {
        self.transmit(conn, true, Wire::Frame(protocol::encode(message)));
    }

    fn edit(&mut self, node: usize, doc: DocumentId, edit: LocalEdit) {
        let token = self.next_token;
        self.next_token += 1;
        self.nodes[node].open_edits.insert(token);
        self.feed(node, Input::Edit { doc, edit, token });
    }

    /// The desk creates a document on the server.
    fn desk_create(&mut self, changes: usize) -> DocumentId {
        let doc = DocumentId::from_bytes(self.rng.bytes16());
        let content = new_document(self.rng.bytes16(), changes);
        self.edit(SERVER, doc, LocalEdit::Create(Box::new(content)));
        doc
    }

    fn put(&mut self, node: usize, doc: DocumentId, key: String) {
        let value = self.rng.below(1_000) as i64;
        let edit = put_edit(self.rng.bytes16(), key, value);
        self.edit(node, doc, edit);
    }

    fn subscribe(&mut self, client: usize, doc: DocumentId) {
        self.nodes[client].subscriptions.insert(doc);
        self.feed(client, Input::Subscribe { doc });
    }

    fn tick(&mut self, node: usize) {
        self.feed(node, Input::Tick);
    }

    /// Kills a node: writes and loads in flight are lost, its connections break, and it
    /// restarts with an empty engine over what its storage completed.
    fn crash(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        n.generation += 1;
        n.pending_writes.clear();
        n.last_write_due = self.now;
        n.open_edits.clear();
        n.engine = Shards::new(&n.config, n.shards);
        let mine: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                if node == SERVER {
                    c.server_open
                } else {
                    c.client == Some(node) && c.client_open
                }
            })
            .map(|(id, _)| *id)
            .collect();
        for conn in mine {
            if let Some(c) = self.conns.get_mut(&conn) {
                if node == SERVER {
                    c.server_open = false;
                } else {
                    c.client_open = false;
                }
            }
            self.break_conn(conn);
        }
        if node != SERVER {
            self.nodes[node].conn = None;
            let docs: Vec<DocumentId> = self.nodes[node].subscriptions.iter().copied().collect();
            for doc in docs {
                self.feed(node, Input::Subscribe { doc });
            }
            self.schedule_reconnect(node);
        }
    }

    // ---- observations ----------------------------------------------------------------------

    /// The document as `node`'s completed writes hold it.
    fn durable_doc(&mut self, node: usize, doc: DocumentId) -> &Automerge {
        let disk = &self.nodes[node].disk;
        let version = disk.versions.get(&doc).copied().unwrap_or(0);
        let stale = self
            .durable_cache
            .get(&(node, doc))
            .is_none_or(|(v, _)| *v != version);
        if stale {
            let loaded = load_all(disk.docs.get(&doc).map(Vec::as_slice).unwrap_or(&[]));
            self.durable_cache.insert((node, doc), (version, loaded));
        }
        &self.durable_cache.get(&(node, doc)).expect("just cached").1
    }

    fn durable_has(&mut self, node: usize, doc: DocumentId, hash: &ChangeHash) -> bool {
        self.durable_doc(node, doc)
            .get_change_by_hash(hash)
            .is_some()
    }

    fn durable_heads(&mut self, node: usize, doc: DocumentId) -> Vec<ChangeHash> {
        self.durable_doc(node, doc).get_heads()
    }

    fn live_conns(&self) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| c.alive)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Asserts what must hold whatever happened: acknowledged edits and announced heads are
    /// stored, and every edit was answered.
    fn check_durable_promises(&mut self) {
        let announced: Vec<(DocumentId, ChangeHash)> = self
            .announced
            .iter()
            .flat_map(|(doc, hashes)| hashes.iter().map(move |h| (*doc, *h)))
            .collect();
        for (doc, hash) in announced {
            assert!(
                self.durable_has(SERVER, doc, &hash),
                "seed {}: the server announced {hash} of {doc} and lost it",
                self.seed
            );
        }
        for node in 0..self.nodes.len() {
            let acked = self.nodes[node].acked.clone();
            for (doc, heads) in acked {
                for head in &heads {
                    assert!(
                        self.durable_has(node, doc, head),
                        "seed {}: node {node} acknowledged an edit of {doc} and lost {head}",
                        self.seed
                    );
                }
            }
        }
    }

    fn check_all_edits_answered(&self) {
        for (node, n) in self.nodes.iter().enumerate() {
            assert!(
                n.open_edits.is_empty(),
                "seed {}: node {node} never answered edits {:?}",
                self.seed,
                n.open_edits
            );
        }
    }
}

/// Cases per property: `default`, or `PROPTEST_CASES` for a longer soak run
/// (`PROPTEST_CASES=2000 cargo test --release -p fieldsync-shared sync::sim`).
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---- the random workload -------------------------------------------------------------------

/// What may go wrong during a workload run.
#[derive(Debug, Clone, Copy)]
struct Hazards {
    breaks: bool,
    crash_server: bool,
    crash_clients: bool,
    write_failures: bool,
    /// Grants flip between read-only and read-write (all end read-write).
    access_churn: bool,
}

/// Documents the desk created, and who may do what with them.
struct World {
    sim: Sim,
    docs: Vec<DocumentId>,
    /// Documents a client created on its own (the server has no record of them).
    local: Vec<(usize, DocumentId)>,
}

/// Sets up a server with a few desk-created documents, clients with random access to them,
/// and connects everyone.
fn world(seed: u64, hazards: Hazards) -> World {
    let mut rng = Rng::new(seed ^ 0x5eed);
    let clients = 2 + rng.below(3) as usize;
    let mut setup = Setup::new(clients).sharded_by(seed);
    setup.chaos = Chaos {
        net_delay: 1 + rng.upto(30),
        write_delay: 1 + rng.upto(30),
        load_delay: 1 + rng.upto(10),
        reconnect_delay: 1 + rng.upto(50),
        break_per_mille: if hazards.breaks { 5 + rng.below(20) } else { 0 },
        write_fail_per_mille: if hazards.write_failures {
            5 + rng.below(20)
        } else {
            0
        },
    };
    setup.document_idle_ms = 50 + rng.upto(500);
    // Half the worlds keep idle documents as saved bytes after a while shorter than the idle
    // time, so documents sleep and wake under every hazard below.
    if rng.below(2) == 0 {
        setup.document_dormant_ms = Some(5 + rng.upto(setup.document_idle_ms / 2));
    }
    setup.compact_after_chunks = 2 + rng.below(6) as usize;
    let mut sim = Sim::new(seed, setup);
    let docs: Vec<DocumentId> = (0..2 + rng.below(3))
        .map(|_| {
            let changes = 1 + rng.below(20) as usize;
            sim.desk_create(changes)
        })
        .collect();
    sim.run_until_quiet();
    for client in sim.clients() {
        let device = device_name(client);
        for &doc in &docs {
            let access = match rng.below(10) {
                0..=1 => Access::None,
                2..=4 => Access::Read,
                _ => Access::ReadWrite,
            };
            sim.policy.grant(&device, doc, access);
            // Some clients also ask for documents they may not see.
            if access != Access::None || rng.below(3) == 0 {
                sim.subscribe(client, doc);
            }
        }
        sim.connect(client);
    }
    // A world where nobody may write any desk document proves nothing about delivery
    // (seed 12747239715908990173 drew no access at all): the first client always writes
    // the first document.
    let writes = |sim: &Sim, client: usize| {
        docs.iter()
            .any(|d| sim.policy.of(&device_name(client), *d) == Access::ReadWrite)
    };
    if !sim.clients().any(|c| writes(&sim, c)) {
        sim.policy
            .grant(&device_name(1), docs[0], Access::ReadWrite);
        sim.subscribe(1, docs[0]);
    }
    World {
        sim,
        docs,
        local: Vec::new(),
    }
}

/// Random edits, ticks, idle time, broken connections and crashes.
fn run_workload(w: &mut World, hazards: Hazards, steps: usize) {
    let sim = &mut w.sim;
    sim.turbulent = true;
    let mut key = 0u64;
    let mut churned: BTreeSet<(String, DocumentId)> = BTreeSet::new();
    for _ in 0..steps {
        if sim.rng.below(4) != 0 && sim.step() {
            continue;
        }
        key += 1;
        match sim.rng.below(100) {
            0..=39 => {
                // A technician edits a job it may write and holds.
                let client = 1 + sim.rng.below(sim.nodes.len() as u64 - 1) as usize;
                let device = device_name(client);
                let own = w.local.iter().filter(|(c, _)| *c == client).map(|(_, d)| d);
                let candidates: Vec<DocumentId> = w
                    .docs
                    .iter()
                    .filter(|d| sim.policy.of(&device, **d) == Access::ReadWrite)
                    .chain(own)
                    .copied()
                    .filter(|d| {
                        sim.nodes[client].subscriptions.contains(d)
                            && sim.nodes[client].disk.docs.contains_key(d)
                    })
                    .collect();
                if let Some(doc) = sim.rng.pick(&candidates) {
                    sim.put(client, doc, format!("c{client}-{}", key % 7));
                }
            }
            40..=54 => {
                if let Some(doc) = sim.rng.pick(&w.docs) {
                    sim.put(SERVER, doc, format!("desk-{}", key % 5));
                }
            }
            55..=64 => {
                let node = sim.rng.below(sim.nodes.len() as u64) as usize;
                sim.tick(node);
            }
            65..=74 => sim.now += sim.rng.upto(300),
            75..=84 if hazards.breaks => {
                let live = sim.live_conns();
                if let Some(conn) = sim.rng.pick(&live) {
                    sim.break_conn(conn);
                }
            }
            85..=86 if hazards.crash_server => sim.crash(SERVER),
            87..=89 if hazards.crash_clients => {
                let client = 1 + sim.rng.below(sim.nodes.len() as u64 - 1) as usize;
                sim.crash(client);
            }
            90..=93 if hazards.access_churn => {
                // The desk makes a technician read-only on a job, or writer again.
                let client = 1 + sim.rng.below(sim.nodes.len() as u64 - 1) as usize;
                let device = device_name(client);
                if let Some(doc) = sim.rng.pick(&w.docs) {
                    let flipped = match sim.policy.of(&device, doc) {
                        Access::Read => Access::ReadWrite,
                        Access::ReadWrite => Access::Read,
                        Access::None => continue,
                    };
                    sim.policy.grant(&device, doc, flipped);
                    churned.insert((device, doc));
                    let changed = Input::AccessChanged {
                        doc: Some(doc),
                        principal: None,
                    };
                    sim.feed(SERVER, changed);
                }
            }
            94..=95 => {
                // A technician starts a document of its own and keeps it in sync; the server
                // has no record of it, so it stays on the device.
                let client = 1 + sim.rng.below(sim.nodes.len() as u64 - 1) as usize;
                let doc = DocumentId::from_bytes(sim.rng.bytes16());
                let content = new_document(sim.rng.bytes16(), 2);
                sim.edit(client, doc, LocalEdit::Create(Box::new(content)));
                sim.subscribe(client, doc);
                w.local.push((client, doc));
            }
            _ => {
                sim.step();
            }
        }
    }
    // Whoever was flipped may write again, so their offline edits must get through now.
    for (device, doc) in churned {
        sim.policy.grant(&device, doc, Access::ReadWrite);
        let principal = Some(device_principal(&device));
        sim.feed(
            SERVER,
            Input::AccessChanged {
                doc: None,
                principal,
            },
        );
    }
    sim.quiesce();
    // Let idle documents go, as the server's clock would.
    sim.now += 10 * sim.nodes[SERVER].config.document_idle_ms;
    for node in 0..sim.nodes.len() {
        sim.tick(node);
    }
    sim.run_until_quiet();
}

/// After quiescence: every node that may read a document holds exactly the server's
/// version of it, in storage and in memory.
fn assert_converged(w: &mut World) {
    let sim = &mut w.sim;
    for &doc in &w.docs {
        let server_heads = sim.durable_heads(SERVER, doc);
        assert!(
            !server_heads.is_empty(),
            "seed {}: the server lost {doc}",
            sim.seed
        );
        if let Some(loaded) = sim.server().document(&doc) {
            assert_eq!(loaded.get_heads(), server_heads, "seed {}", sim.seed);
        }
        for client in sim.clients() {
            let device = device_name(client);
            if !sim.nodes[client].subscriptions.contains(&doc) {
                continue;
            }
            let heads = sim.durable_heads(client, doc);
            if sim.policy.of(&device, doc) == Access::None {
                assert!(
                    heads.is_empty(),
                    "seed {}: client {client} received {doc} without access",
                    sim.seed
                );
                continue;
            }
            assert_eq!(
                heads, server_heads,
                "seed {}: client {client} did not converge on {doc}",
                sim.seed
            );
            if let Some(loaded) = sim.nodes[client].engine.document(&doc) {
                assert_eq!(loaded.get_heads(), server_heads, "seed {}", sim.seed);
            }
        }
    }
}

/// A document a client made on its own stays there: the server holds and loads nothing
/// of it.
fn assert_local_documents_stay_local(w: &mut World) {
    let sim = &mut w.sim;
    for &(client, doc) in &w.local {
        assert!(
            !sim.nodes[SERVER].disk.docs.contains_key(&doc),
            "seed {}: the server stored client {client}'s private {doc}",
            sim.seed
        );
        assert!(!sim.nodes[SERVER].loads.contains(&doc), "seed {}", sim.seed);
        let created = sim.nodes[client]
            .acked
            .iter()
            .any(|(d, heads)| *d == doc && !heads.is_empty());
        if created {
            let heads = sim.durable_heads(client, doc);
            assert!(
                !heads.is_empty(),
                "seed {}: client {client} lost {doc}",
                sim.seed
            );
        }
    }
}

/// Once quiet, a connected writer that holds the server's version of a document has been
/// told the server holds it (`Delivered`): a device never stays unsure whether its last change
/// reached the server.
fn assert_writers_were_told(w: &mut World) {
    let sim = &mut w.sim;
    for client in sim.clients() {
        if sim.nodes[client].conn.is_none() {
            continue;
        }
        let device = device_name(client);
        for &doc in &w.docs {
            if sim.policy.of(&device, doc) != Access::ReadWrite
                || !sim.nodes[client].subscriptions.contains(&doc)
            {
                continue;
            }
            let server_heads = sim.durable_heads(SERVER, doc);
            let told = sim.nodes[client].last_delivered.get(&doc).cloned();
            assert_eq!(
                told.as_ref(),
                Some(&server_heads),
                "seed {}: client {client} holds {doc} as the server does but was never told so",
                sim.seed
            );
        }
    }
}

/// Every edit a writer acknowledged reached the server.
fn assert_acked_edits_reached_server(w: &mut World) {
    let sim = &mut w.sim;
    for client in sim.clients() {
        let acked = sim.nodes[client].acked.clone();
        for (doc, heads) in acked.iter().filter(|(d, _)| w.docs.contains(d)) {
            for head in heads {
                assert!(
                    sim.durable_has(SERVER, *doc, head),
                    "seed {}: client {client}'s acknowledged edit {head} of {doc} never \
                     reached the server",
                    sim.seed
                );
            }
        }
    }
}

const CALM: Hazards = Hazards {
    breaks: false,
    crash_server: false,
    crash_clients: false,
    write_failures: false,
    access_churn: false,
};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(16)))]

    /// Property 1: random edits, delays, reordering and dropped connections; once the
    /// network is quiet every reader holds the server's heads.
    #[test]
    fn convergence(seed in any::<u64>()) {
        let hazards = Hazards { breaks: true, crash_clients: true, access_churn: true, ..CALM };
        let mut w = world(seed, hazards);
        run_workload(&mut w, hazards, 600);
        assert_converged(&mut w);
        // Every `Delivered` was checked against the server's disk as it happened; clients
        // that edited and stayed online must have seen some.
        let delivered: u64 = w.sim.clients().map(|c| w.sim.nodes[c].delivered).sum();
        prop_assert!(delivered > 0, "seed {seed}: no client was ever told the server holds its changes");
        assert_acked_edits_reached_server(&mut w);
        assert_local_documents_stay_local(&mut w);
        assert_writers_were_told(&mut w);
        w.sim.check_durable_promises();
        w.sim.check_all_edits_answered();
    }

    /// Property 2: the durability barrier (checked on every frame sent) holds while the
    /// server crashes at random points and loses the writes in flight; every change it ever
    /// announced is still there after each restart, and the clients still converge.
    #[test]
    fn announced_changes_survive_server_crashes(seed in any::<u64>()) {
        let hazards = Hazards { breaks: true, crash_server: true, crash_clients: true, ..CALM };
        let mut w = world(seed, hazards);
        run_workload(&mut w, hazards, 600);
        w.sim.check_durable_promises();
        assert_converged(&mut w);
        assert_acked_edits_reached_server(&mut w);
        w.sim.check_all_edits_answered();
    }

    /// Failed writes drop the document and close its sessions; nothing unstored is ever
    /// announced, every edit is answered, and the peers resend what was lost.
    #[test]
    fn failed_writes_lose_nothing_announced(seed in any::<u64>()) {
        let hazards = Hazards { breaks: true, write_failures: true, ..CALM };
        let mut w = world(seed, hazards);
        run_workload(&mut w, hazards, 600);
        w.sim.check_durable_promises();
        w.sim.check_all_edits_answered();
        assert_converged(&mut w);
        assert_acked_edits_reached_server(&mut w);
    }
}

/// A seed on which a writer once stayed unsure forever: its last message named the server's
/// heads, automerge took that as if it had sent them, and neither side spoke again.
#[test]
fn a_writer_is_told_the_server_holds_its_last_change() {
    let hazards = Hazards {
        breaks: true,
        crash_clients: true,
        access_churn: true,
        ..CALM
    };
    let mut w = world(17_813_526_555_639_781_385, hazards);
    run_workload(&mut w, hazards, 600);
    assert_converged(&mut w);
    assert_writers_were_told(&mut w);
}

/// A seed replays exactly: the same frames and writes at the same times, the same result.
/// (A `HashMap` walked while emitting effects, or a random actor id, would break this, and
/// with it every failure report of this module.)
#[test]
fn a_seed_replays_exactly() {
    let hazards = Hazards {
        breaks: true,
        crash_server: true,
        crash_clients: true,
        write_failures: true,
        access_churn: true,
    };
    let run = |seed| {
        let mut w = world(seed, hazards);
        run_workload(&mut w, hazards, 400);
        let docs = w.docs.clone();
        let heads: Vec<Vec<ChangeHash>> = docs
            .iter()
            .map(|d| w.sim.durable_heads(SERVER, *d))
            .collect();
        (w.sim.digest, w.sim.now, heads)
    };
    let (one, two) = (run(1), run(2));
    assert_eq!(one, run(1));
    assert_eq!(two, run(2));
    assert_ne!(one.0, two.0, "the digest depends on what happened");
}

// ---- access ----------------------------------------------------------------------------------

/// The data of a first sync message from a peer holding `doc` (or nothing).
fn first_sync_data(doc: &Automerge) -> Vec<u8> {
    doc.generate_sync_message(&mut AmSyncState::new())
        .expect("a first sync message")
        .encode()
}

/// The data of a sync message that carries every change of `doc`, as a peer sends once it
/// learnt that the receiver has none of them.
fn sync_data_with_changes(doc: &Automerge) -> Vec<u8> {
    let mut state = AmSyncState::new();
    state.their_heads = Some(Vec::new());
    state.their_need = Some(Vec::new());
    state.their_have = Some(vec![Have::default()]);
    let message = doc
        .generate_sync_message(&mut state)
        .expect("a sync message");
    assert!(!message.changes.is_empty(), "the message carries changes");
    message.encode()
}

fn sync_frame(from: &str, doc: DocumentId, data: Vec<u8>, request: bool) -> Message {
    let payload = SyncMessage {
        sender_id: PeerId::new(from),
        target_id: PeerId::new(SERVER_PEER_ID),
        document_id: doc,
        data,
    };
    if request {
        Message::Request(payload)
    } else {
        Message::Sync(payload)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(32)))]

    /// Property 3a: requests for documents a peer may not see, existing or not, are answered
    /// `doc-unavailable`, load nothing and leave `loaded_documents` flat throughout.
    #[test]
    fn forbidden_requests_load_nothing(
        seed in any::<u64>(),
        ids in vec(any::<[u8; 16]>(), 1..120),
    ) {
        let mut sim = Sim::new(seed, Setup::new(1).sharded_by(seed));
        let known = sim.desk_create(3);
        let secret = sim.desk_create(3);
        sim.run_until_quiet();
        sim.policy.grant(&device_name(1), known, Access::ReadWrite);
        sim.subscribe(1, known);
        sim.connect(1);
        let raw = sim.raw_connect("dev-intruder");
        sim.run_until_quiet();
        // Idle documents go, so the flood starts from a known count.
        sim.now += 10_000;
        sim.tick(SERVER);
        let baseline = sim.server().loaded_documents();
        let loads = sim.nodes[SERVER].loads.len();
        let refusals = sim.nodes[SERVER].refused("forbidden");

        // The flood: random ids, plus the two real documents, as requests and as sync
        // messages carrying changes.
        let mut targets: Vec<DocumentId> = ids.into_iter().map(DocumentId::from_bytes).collect();
        targets.push(known);
        targets.push(secret);
        let content = new_document(sim.rng.bytes16(), 2);
        for (i, &doc) in targets.iter().enumerate() {
            let data = if i % 2 == 0 {
                first_sync_data(&Automerge::new())
            } else {
                sync_data_with_changes(&content)
            };
            sim.raw_send(raw, &sync_frame("dev-intruder", doc, data, i % 2 == 0));
            // Interleave delivery with the flood, and look at every step.
            while sim.rng.below(3) != 0 && sim.step() {
                prop_assert_eq!(sim.server().loaded_documents(), baseline);
            }
        }
        while sim.step() {
            prop_assert_eq!(sim.server().loaded_documents(), baseline);
        }

        let server = &sim.nodes[SERVER];
        prop_assert_eq!(server.loads.len(), loads, "a forbidden request caused a load");
        prop_assert_eq!(server.refused("forbidden") - refusals, targets.len());
        let inbox = &sim.conns[&raw].inbox;
        let unavailable: Vec<DocumentId> = inbox
            .iter()
            .filter_map(|m| match m {
                Message::DocUnavailable(u) => Some(u.document_id),
                _ => None,
            })
            .collect();
        prop_assert_eq!(unavailable, targets, "one doc-unavailable per request, in order");
        prop_assert!(
            !inbox.iter().any(|m| matches!(m, Message::Sync(_))),
            "nothing of a forbidden document is revealed"
        );
        prop_assert!(sim.conns[&raw].alive, "asking is not a protocol violation");
        prop_assert_eq!(sim.durable_heads(SERVER, secret).len(), 1, "nothing was applied");
    }

    /// Property 3b: a read-only session that sends changes changes nothing on the server
    /// (each refused as `read_only`), still receives the document's changes, and the
    /// exchange comes to rest.
    #[test]
    fn read_only_sessions_change_nothing(seed in any::<u64>(), edits in 1usize..6) {
        let mut setup = Setup::new(2).sharded_by(seed);
        setup.chaos.net_delay = 20;
        setup.chaos.write_delay = 20;
        let mut sim = Sim::new(seed, setup);
        let doc = sim.desk_create(5);
        sim.run_until_quiet();
        let (writer, reader) = (1, 2);
        sim.policy.grant(&device_name(writer), doc, Access::ReadWrite);
        sim.policy.grant(&device_name(reader), doc, Access::Read);
        for client in [writer, reader] {
            sim.subscribe(client, doc);
            sim.connect(client);
        }
        sim.run_until_quiet();
        prop_assert_eq!(sim.durable_heads(reader, doc), sim.durable_heads(SERVER, doc));

        for i in 0..edits {
            sim.put(reader, doc, format!("ro-{i}"));
            sim.put(writer, doc, format!("rw-{i}"));
            for _ in 0..sim.rng.below(20) {
                sim.step();
            }
        }
        sim.run_until_quiet();

        let server_doc = sim.durable_doc(SERVER, doc).clone();
        for i in 0..edits {
            prop_assert!(
                server_doc.get(ROOT, format!("ro-{i}")).expect("read").is_none(),
                "a read-only peer changed the document"
            );
            let written = server_doc.get(ROOT, format!("rw-{i}")).expect("read");
            prop_assert!(written.is_some(), "a writer's edit is missing");
        }
        // The engine honours automerge's read-only flag and does not even send them; a peer
        // that does (an older automerge) has them refused.
        let raw = sim.raw_connect(&device_name(reader));
        let own = new_document(sim.rng.bytes16(), 3);
        let data = sync_data_with_changes(&own);
        sim.raw_send(raw, &sync_frame(&device_name(reader), doc, data, false));
        sim.run_until_quiet();
        prop_assert!(sim.nodes[SERVER].refused("read_only") >= 1);
        prop_assert!(sim.conns[&raw].inbox.iter().any(|m| matches!(m, Message::Sync(_))));
        prop_assert_eq!(sim.durable_doc(SERVER, doc).get_heads(), server_doc.get_heads());
        // The reader has everything the server has (and its own refused edits).
        let reader_doc = sim.durable_doc(reader, doc).clone();
        for head in server_doc.get_heads() {
            prop_assert!(reader_doc.get_change_by_hash(&head).is_some());
        }
        prop_assert_eq!(sim.durable_heads(writer, doc), server_doc.get_heads());
    }
}

// ---- eviction ----------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(32)))]

    /// Property 4: a document stays loaded while any session is open, goes once the last one
    /// closed and the idle time passed, and never while its writes are in flight.
    #[test]
    fn idle_documents_are_evicted_and_busy_ones_wait(seed in any::<u64>(), clients in 1usize..4) {
        let mut sim = Sim::new(seed, Setup::new(clients).sharded_by(seed));
        let idle = sim.nodes[SERVER].config.document_idle_ms;
        let doc = sim.desk_create(3);
        sim.run_until_quiet();
        for client in 1..=clients {
            sim.policy.grant(&device_name(client), doc, Access::ReadWrite);
            sim.subscribe(client, doc);
            sim.connect(client);
        }
        sim.run_until_quiet();
        prop_assert_eq!(sim.server().loaded_documents(), 1);

        // Clients leave one by one, in random order; the document stays while any remains.
        let mut order: Vec<usize> = (1..=clients).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, sim.rng.below(i as u64 + 1) as usize);
        }
        for (left, &client) in order.iter().enumerate() {
            sim.go_offline(client);
            sim.run_until_quiet();
            sim.now += idle + 1;
            sim.tick(SERVER);
            let expected = usize::from(left + 1 < clients);
            prop_assert_eq!(sim.server().loaded_documents(), expected);
        }

        // The desk edits the evicted document: it loads, the write is in flight for longer
        // than the idle time, and a tick then must not evict it.
        sim.put(SERVER, doc, "late".into());
        while sim.nodes[SERVER].pending_writes.is_empty() {
            prop_assert!(sim.step(), "the edit emitted a write");
        }
        sim.now += idle + 1;
        sim.tick(SERVER);
        prop_assert_eq!(sim.server().loaded_documents(), 1, "evicted with a write in flight");
        sim.run_until_quiet();
        prop_assert!(sim.nodes[SERVER].pending_writes.is_empty());
        sim.now += idle + 1;
        sim.tick(SERVER);
        prop_assert_eq!(sim.server().loaded_documents(), 0);
        // And it comes back whole.
        let stored = sim.durable_doc(SERVER, doc).clone();
        prop_assert!(stored.get(ROOT, "late").expect("read").is_some());
        sim.check_all_edits_answered();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(32)))]

    /// Property 4b (issue 17): a document idle for the dormant time keeps only its saved
    /// bytes, still counts as loaded, and is never read meanwhile; a peer that comes back or
    /// a desk edit wakes it with exactly the content stored, without a load from storage,
    /// and the idle time still evicts it. A document whose saved bytes exceed
    /// `dormant_max_bytes` stays awake.
    #[test]
    fn idle_documents_sleep_as_saved_bytes_and_wake_whole(
        seed in any::<u64>(),
        clients in 1usize..4,
        offline_edits in 0usize..3,
    ) {
        let mut setup = Setup::new(clients).sharded_by(seed);
        setup.document_dormant_ms = Some(100);
        setup.dormant_max_bytes = 2_000;
        let mut sim = Sim::new(seed, setup);
        let idle = sim.nodes[SERVER].config.document_idle_ms;
        let doc = sim.desk_create(3);
        let big = sim.desk_create(500);
        sim.run_until_quiet();
        prop_assert!(sim.durable_doc(SERVER, big).save().len() > 2_000);
        for client in 1..=clients {
            sim.policy.grant(&device_name(client), doc, Access::ReadWrite);
            sim.subscribe(client, doc);
            sim.connect(client);
        }
        sim.run_until_quiet();
        let heads = sim.durable_heads(SERVER, doc);

        // Every client leaves; before the dormant time nothing sleeps, after it the document
        // does, and it is still one loaded document.
        for client in 1..=clients {
            sim.go_offline(client);
        }
        sim.run_until_quiet();
        sim.tick(SERVER);
        prop_assert_eq!(sim.server().dormant_documents(), 0, "asleep before its time");
        sim.now += 101;
        sim.tick(SERVER);
        prop_assert_eq!(sim.server().dormant_documents(), 1);
        prop_assert_eq!(sim.server().loaded_documents(), 2);
        prop_assert!(sim.server().document(&doc).is_none(), "a dormant document is read");
        prop_assert!(sim.server().document(&big).is_some(), "a big document slept");

        // A client edits offline and comes back: the document wakes from its bytes (no load
        // from storage) and both sides converge on the stored content.
        let loads = sim.server().stats().docs_loaded_total;
        for i in 0..offline_edits {
            sim.put(1, doc, format!("offline-{i}"));
        }
        sim.run_until_quiet();
        sim.nodes[1].online = true;
        sim.connect(1);
        sim.run_until_quiet();
        prop_assert_eq!(sim.server().dormant_documents(), 0);
        prop_assert_eq!(sim.server().stats().docs_woken_total, 1);
        prop_assert_eq!(sim.server().stats().docs_loaded_total, loads, "loaded from storage");
        let woken = sim.server().document(&doc).expect("awake").get_heads();
        prop_assert_eq!(&woken, &sim.durable_heads(SERVER, doc));
        prop_assert_eq!(&sim.durable_heads(1, doc), &woken);
        if offline_edits == 0 {
            prop_assert_eq!(&woken, &heads);
        }

        // It sleeps again once the client leaves, a desk edit wakes it, and the idle time
        // evicts it, dormant or not.
        sim.go_offline(1);
        sim.run_until_quiet();
        sim.now += 101;
        sim.tick(SERVER);
        prop_assert_eq!(sim.server().dormant_documents(), 1);
        sim.put(SERVER, doc, "desk".into());
        sim.run_until_quiet();
        prop_assert_eq!(sim.server().dormant_documents(), 0);
        prop_assert!(sim.durable_doc(SERVER, doc).get(ROOT, "desk").expect("read").is_some());
        sim.now += 101;
        sim.tick(SERVER);
        prop_assert_eq!(sim.server().dormant_documents(), 1);
        sim.now += idle + 1;
        sim.tick(SERVER);
        prop_assert_eq!(sim.server().loaded_documents(), 0);
        prop_assert_eq!(sim.server().dormant_documents(), 0);
        sim.check_durable_promises();
        sim.check_all_edits_answered();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(16)))]

    /// Property 4c (issue 17): under a byte budget for documents (`max_document_memory`),
    /// idle documents leave memory once the documents held exceed it, while documents in use
    /// stay whatever they take; a load is refused, with an answer that names the limit, only
    /// while the documents in use take the whole budget; nothing stored is lost.
    #[test]
    fn a_memory_budget_evicts_idle_documents_and_refuses_loads_only_when_all_are_in_use(
        seed in any::<u64>(),
        changes in 50usize..300,
    ) {
        // What one such document counts for, measured on a server without a budget.
        let one = {
            let mut sim = Sim::new(seed, Setup::new(2));
            sim.desk_create(changes);
            sim.run_until_quiet();
            sim.server().document_memory()
        };
        let mut setup = Setup::new(2);
        setup.max_document_memory = Some(one + one / 2);
        let mut sim = Sim::new(seed, setup);
        let first = sim.desk_create(changes);
        sim.run_until_quiet();
        prop_assert_eq!(sim.server().document_memory(), one);
        sim.tick(SERVER);
        prop_assert_eq!(sim.server().loaded_documents(), 1, "evicted within the budget");

        // A device holds the first; the desk creates a second, which fits when it is loaded
        // and leaves at the next tick, the only idle one, once the two exceed the budget.
        sim.policy.grant(&device_name(1), first, Access::ReadWrite);
        sim.subscribe(1, first);
        sim.connect(1);
        sim.run_until_quiet();
        let second = sim.desk_create(changes);
        sim.run_until_quiet();
        prop_assert_eq!(sim.server().loaded_documents(), 2);
        sim.tick(SERVER);
        prop_assert_eq!(sim.server().loaded_documents(), 1);
        prop_assert!(sim.server().document(&first).is_some(), "a document in use was evicted");
        prop_assert!(sim.durable_doc(SERVER, second).get_heads().len() == 1);

        // A second device asks for it: it loads (the first alone fits), and both stay while
        // in use, over the budget.
        sim.policy.grant(&device_name(2), second, Access::ReadWrite);
        sim.subscribe(2, second);
        sim.connect(2);
        sim.run_until_quiet();
        sim.tick(SERVER);
        prop_assert_eq!(sim.server().loaded_documents(), 2);
        prop_assert_eq!(sim.durable_heads(2, second), sim.durable_heads(SERVER, second));

        // Nothing is idle: a third document is refused, and the desk is told why.
        let refused = sim.nodes[SERVER].refused("document_memory_full");
        let third = sim.desk_create(changes);
        sim.run_until_quiet();
        prop_assert_eq!(sim.nodes[SERVER].refused("document_memory_full"), refused + 1);
        let busy = sim.nodes[SERVER].edit_errors.last().expect("the create was refused");
        prop_assert!(
            matches!(busy, LocalEditError::Busy(limit) if limit.contains("max_document_memory")),
            "{busy:?}"
        );
        prop_assert_eq!(sim.server().loaded_documents(), 2);
        // A device asking for a document then is refused the same way.
        sim.policy.grant(&device_name(2), third, Access::ReadWrite);
        sim.subscribe(2, third);
        sim.run_until_quiet();
        prop_assert_eq!(sim.nodes[SERVER].refused("document_memory_full"), refused + 2);
        prop_assert_eq!(sim.server().loaded_documents(), 2);

        // The first device leaves: its document is idle, leaves at the next tick, and the
        // third can be created.
        sim.go_offline(1);
        sim.run_until_quiet();
        sim.tick(SERVER);
        prop_assert_eq!(sim.server().loaded_documents(), 1);
        prop_assert!(sim.server().document(&first).is_none());
        let content = new_document(sim.rng.bytes16(), changes);
        sim.edit(SERVER, third, LocalEdit::Create(Box::new(content)));
        sim.run_until_quiet();
        prop_assert!(!sim.durable_doc(SERVER, third).get_heads().is_empty());
        sim.check_durable_promises();
        sim.check_all_edits_answered();
    }
}

// ---- reconnects -----------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(16)))]

    /// Property 5: after a full sync, a client that reconnects with the same storage id
    /// (sync state persisted on both sides by `PutSyncState`, read back by
    /// `LoadSyncState`) exchanges only small messages: neither side's first sync message
    /// summarises more history than what happened offline, the server sends no changes the
    /// client has, and the whole exchange is tiny next to the document.
    #[test]
    fn reconnect_with_persisted_sync_state_is_cheap(
        seed in any::<u64>(),
        changes in 200usize..400,
        offline_edits in 0usize..3,
    ) {
        let mut sim = Sim::new(seed, Setup::new(1).sharded_by(seed));
        let doc = DocumentId::from_bytes(sim.rng.bytes16());
        let mut content = Automerge::new().with_actor(ActorId::from(sim.rng.bytes16()));
        for i in 0..changes {
            let mut tx = content.transaction();
            // Photos and signatures are bytes that do not compress.
            let blob: Vec<u8> = (0..8).flat_map(|_| sim.rng.next().to_le_bytes()).collect();
            tx.put(ROOT, format!("blob-{}", i % 50), blob).expect("put");
            tx.commit();
        }
        sim.edit(SERVER, doc, LocalEdit::Create(Box::new(content)));
        sim.run_until_quiet();
        sim.policy.grant(&device_name(1), doc, Access::ReadWrite);
        sim.subscribe(1, doc);
        sim.connect(1);
        sim.run_until_quiet();
        prop_assert_eq!(sim.durable_heads(1, doc), sim.durable_heads(SERVER, doc));
        let doc_size = sim.durable_doc(SERVER, doc).save().len();

        // Disconnect; both sides store their sync state. The technician works offline.
        sim.go_offline(1);
        sim.run_until_quiet();
        prop_assert!(sim.nodes[SERVER].disk.sync_states.keys().any(|(d, _)| *d == doc));
        prop_assert!(sim.nodes[1].disk.sync_states.keys().any(|(d, _)| *d == doc));
        for i in 0..offline_edits {
            sim.put(1, doc, format!("offline-{i}"));
            sim.run_until_quiet();
        }

        sim.record = true;
        sim.nodes[1].online = true;
        let in_memory = sim.server().document(&doc).is_some();
        let state_loads = sim.nodes[SERVER].state_loads.len();
        let conn = sim.connect(1);
        sim.run_until_quiet();
        // Issue 17: a device with nothing new names only heads the server holds; with the
        // document in memory the server answers without reading the persisted state.
        let read_state = sim.nodes[SERVER].state_loads.len() > state_loads;
        if in_memory && offline_edits == 0 {
            prop_assert!(!read_state, "read the sync state for an unchanged reconnect");
        }
        if offline_edits > 0 {
            prop_assert!(read_state, "did not read the sync state for new changes");
        }

        let first_from = |node: usize| {
            sim.sent
                .iter()
                .filter(|s| s.from == node && s.conn == conn)
                .find_map(|s| sync_payload(&s.bytes).map(|(_, m)| (s.bytes.len(), m)))
                .expect("a sync message each way")
        };
        let (server_len, server_first) = first_from(SERVER);
        let (_, client_first) = first_from(1);
        prop_assert!(server_first.changes.is_empty(), "changes sent to a client that has them");
        // Without the persisted states each side's bloom filter lists every change it holds.
        let offline = offline_edits as u64;
        prop_assert!(bloom_entries(&client_first) <= offline, "client summarised old history");
        prop_assert!(bloom_entries(&server_first) == 0, "server summarised old history");
        prop_assert!(
            server_len * 20 < doc_size && server_len < 300,
            "first sync message of {} bytes for a document of {} bytes",
            server_len,
            doc_size
        );
        let total: usize = sim.sent.iter().map(|s| s.bytes.len()).sum();
        prop_assert!(total * 10 < doc_size, "{total} bytes exchanged for {doc_size}");
        prop_assert_eq!(sim.durable_heads(1, doc), sim.durable_heads(SERVER, doc));
    }
}

/// How many changes the bloom filters of a sync message summarise.
fn bloom_entries(message: &AmSyncMessage) -> u64 {
    message
        .have
        .iter()
        .map(|have| {
            // A filter starts with its entry count (LEB128); an empty filter has no bytes.
            let bytes = have.bloom.to_bytes();
            let mut count = 0u64;
            for (i, byte) in bytes.iter().take(10).enumerate() {
                count |= u64::from(byte & 0x7f) << (7 * i);
                if byte & 0x80 == 0 {
                    break;
                }
            }
            count
        })
        .sum()
}

// ---- hostile input ---------------------------------------------------------------------------

/// A v1 sync message whose one have carries a bloom filter with `bits_per_entry = 0`: it
/// claims entries but has no bits, and automerge 0.12 would take a remainder modulo zero
/// generating its answer.
fn zero_bits_bloom_message(entries: u64, probes: u64) -> Vec<u8> {
    let mut bloom = Vec::new();
    uleb(&mut bloom, entries);
    uleb(&mut bloom, 0);
    uleb(&mut bloom, probes);
    let mut out = vec![0x42, 0, 0, 1, 0];
    uleb(&mut out, bloom.len() as u64);
    out.extend_from_slice(&bloom);
    out.push(0);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(32)))]

    /// Property 6: a sync message whose bloom filter has `bits_per_entry = 0` closes that
    /// connection only (before automerge sees it); another client keeps syncing.
    #[test]
    fn bad_bloom_filter_closes_only_its_connection(
        seed in any::<u64>(),
        entries in 1u64..1_000,
        probes in 1u64..8,
    ) {
        let mut sim = Sim::new(seed, Setup::new(1).sharded_by(seed));
        let doc = sim.desk_create(5);
        sim.run_until_quiet();
        sim.policy.grant(&device_name(1), doc, Access::ReadWrite);
        sim.policy.grant("dev-hostile", doc, Access::ReadWrite);
        sim.subscribe(1, doc);
        let good = sim.connect(1);
        let bad = sim.raw_connect("dev-hostile");
        // The hostile peer first syncs properly, so it holds a session on the document.
        sim.raw_send(bad, &sync_frame("dev-hostile", doc, first_sync_data(&Automerge::new()), true));
        sim.run_until_quiet();
        prop_assert!(sim.conns[&bad].inbox.iter().any(|m| matches!(m, Message::Sync(_))));

        sim.raw_send(
            bad,
            &sync_frame("dev-hostile", doc, zero_bits_bloom_message(entries, probes), false),
        );
        // The good client edits meanwhile.
        sim.put(1, doc, "after".into());
        sim.run_until_quiet();

        let server = &sim.nodes[SERVER];
        prop_assert_eq!(server.closes.len(), 1);
        prop_assert_eq!(server.closes[0].0, bad);
        prop_assert_eq!(server.closes[0].1, CloseCode::Protocol);
        prop_assert!(server
            .refusals
            .iter()
            .any(|(c, reason, _)| *c == Some(bad) && *reason == "bad_sync_message"));
        prop_assert_eq!(server.engine.stats().panics_caught, 0);
        prop_assert!(!sim.conns[&bad].alive);
        prop_assert!(sim.conns[&good].alive && sim.nodes[1].conn == Some(good));
        let stored = sim.durable_doc(SERVER, doc).clone();
        prop_assert!(stored.get(ROOT, "after").expect("read").is_some());
        prop_assert_eq!(sim.durable_heads(1, doc), stored.get_heads());
    }
}

// ---- shards ----------------------------------------------------------------------------------

/// Issue 17: what every shard hears about a connection is answered by one of them. A peer
/// joining a server split into one to four shards gets one `peer`, its requests for
/// documents spread over the shards are each answered, a revoked device is told and closed
/// once, and every shard forgets it.
#[test]
fn a_sharded_server_answers_a_connection_once() {
    for shards in 1..=4 {
        let mut setup = Setup::new(1);
        setup.shards = shards;
        let mut sim = Sim::new(17, setup);
        let docs: Vec<DocumentId> = (0..12).map(|_| sim.desk_create(2)).collect();
        sim.run_until_quiet();
        let owners: BTreeSet<usize> = docs.iter().map(|d| super::shard_of(d, shards)).collect();
        assert_eq!(owners.len(), shards, "twelve documents land on every shard");
        for &doc in &docs {
            sim.policy.grant("dev-9", doc, Access::Read);
        }
        let conn = sim.raw_connect("dev-9");
        for &doc in &docs {
            let data = first_sync_data(&Automerge::new());
            sim.raw_send(conn, &sync_frame("dev-9", doc, data, true));
        }
        sim.run_until_quiet();
        let inbox = &sim.conns[&conn].inbox;
        let peers = inbox
            .iter()
            .filter(|m| matches!(m, Message::Peer(_)))
            .count();
        assert_eq!(peers, 1, "{shards} shards: the join is answered once");
        let answered: BTreeSet<DocumentId> = inbox
            .iter()
            .filter_map(|m| match m {
                Message::Sync(p) => Some(p.document_id),
                _ => None,
            })
            .collect();
        assert_eq!(answered, docs.iter().copied().collect(), "{shards} shards");
        assert_eq!(sim.server().loaded_documents(), docs.len());

        sim.feed(
            SERVER,
            Input::Kick {
                principal: device_principal("dev-9"),
                reason: "revoked".into(),
            },
        );
        sim.run_until_quiet();
        let server = &sim.nodes[SERVER];
        assert_eq!(server.refused("revoked"), 1, "{shards} shards: one refusal");
        assert_eq!(server.closes.len(), 1, "{shards} shards: one close");
        assert_eq!(sim.server().connections(), 0, "{shards} shards");
        let errors = sim.conns[&conn]
            .inbox
            .iter()
            .filter(|m| matches!(m, Message::Error(_)))
            .count();
        assert_eq!(errors, 1, "{shards} shards: told once");
        // Every shard let go of the sessions: the documents go at the next idle tick.
        sim.now += 10_000;
        sim.tick(SERVER);
        assert_eq!(sim.server().loaded_documents(), 0, "{shards} shards");
    }
}

//! The hub: the threads that own the sync engine and carry out its effects.
//!
//! The engine is split into shards by document (issue 17, `fieldsync_shared::sync::shards`),
//! one OS thread each (`fieldsync-hub`, then `fieldsync-hub-1`, …; `limits.hub_shards`,
//! 1 unless configured). Connection tasks and API handlers send [`HubInput`]s through
//! the [`Hub`] handle, which routes each to its shards in the caller's thread (a frame is
//! decoded there to find its document); a shard feeds its inputs to its engine one at a time
//! and performs what comes back: frames go to the connection's outbox (every shard holds a
//! clone of it), loads run on the blocking pool, writes go to the store's writer thread and
//! report back to the shard when durable. The engine runs on its own threads so its CPU work
//! never stalls the async runtime that moves bytes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use automerge::ChangeHash;
use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::job::approvals::{ApprovalsStamp, approvals_stamp};
use fieldsync_shared::sync::shards::shard_config;
use fieldsync_shared::sync::{
    CloseCode, ConnId, Effect, Engine, EngineConfig, EngineStats, Input, LocalEdit, LocalEditError,
    Principal, Router,
};
use fieldsync_storage::Store;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{broadcast, mpsc as tokio_mpsc, oneshot};

use crate::metrics::{SyncMetrics, set_count};
use crate::sync::registry::Registry;

/// What a connection task receives from the hub.
#[derive(Debug)]
pub enum Outbound {
    Frame(Vec<u8>),
    Close(CloseCode, String),
}

/// Messages to the hub.
pub enum HubInput {
    /// A new authenticated connection and the channel to reach it (every shard gets a clone).
    Open {
        conn: ConnId,
        principal: Principal,
        outbox: tokio_mpsc::Sender<Outbound>,
        /// This server dialled the connection (the branch's link to head office).
        dialed: bool,
    },
    /// An input for the engine, with when it arrived (for the latency histogram).
    Engine(Input, Instant),
    /// A local change; the reply comes once it is durable.
    Edit {
        doc: DocumentId,
        edit: LocalEdit,
        reply: oneshot::Sender<Result<Vec<ChangeHash>, LocalEditError>>,
    },
}

/// What a shard's thread receives.
enum ToShard {
    Input(HubInput),
    /// Stop after answering everything queued before.
    Shutdown(oneshot::Sender<()>),
}

/// How many frames may wait for one slow connection before the hub gives up on it.
pub const OUTBOX: usize = 4096;
/// The approvals feed carries every durable change, and its reader handles most of them
/// without a load: a deeper queue before it lags and has to reread every job.
const APPROVALS_FEED: usize = 4096;

/// A durable change of a document, with what the edge's workers need to know of it, taken
/// from the document in memory at that moment: the stamp of its approvals and whether a
/// completion request waits (`None` / `true`: it was not in memory to ask, so read it), and
/// the position of its last stored change (`Store::doc_seq`), read just before: the
/// document in memory holds every change up to it (`sync::progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalsChange {
    pub doc: DocumentId,
    pub stamp: Option<ApprovalsStamp>,
    pub seq: Option<i64>,
    pub completion_pending: bool,
}
const TICK: Duration = Duration::from_secs(1);

/// The longest the hub lets free memory sit in the allocator while it is never quiet for a
/// whole tick (see [`Release`]).
const RELEASE_AT_LEAST_EVERY: Duration = Duration::from_secs(60);

/// A handle to the hub's threads.
#[derive(Clone, Debug)]
pub struct Hub {
    /// One channel per shard.
    shards: Vec<mpsc::Sender<ToShard>>,
    router: Router,
    doc_changed: broadcast::Sender<DocumentId>,
    approvals: broadcast::Sender<ApprovalsChange>,
    delivered: broadcast::Sender<(DocumentId, Vec<ChangeHash>)>,
}

impl std::fmt::Debug for HubInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HubInput::Open { conn, .. } => write!(f, "Open({conn:?})"),
            HubInput::Engine(input, _) => write!(f, "Engine({input:?})"),
            HubInput::Edit { doc, .. } => write!(f, "Edit({doc})"),
        }
    }
}

impl Hub {
    /// Starts the hub's threads: `shards` of them (at least one), each owning the documents
    /// that hash to it, with an even share of `config.max_loaded_documents`.
    pub fn start(
        config: EngineConfig,
        shards: usize,
        store: Arc<Store>,
        registry: Arc<RwLock<Registry>>,
        metrics: SyncMetrics,
        runtime: tokio::runtime::Handle,
    ) -> std::io::Result<Self> {
        let count = shards.max(1);
        let (doc_changed, _) = broadcast::channel(1024);
        let (delivered, _) = broadcast::channel(1024);
        let (approvals, _) = broadcast::channel(APPROVALS_FEED);
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..count).map(|_| mpsc::channel()).unzip();
        let hub = Hub {
            shards: senders.clone(),
            router: Router::new(count, config.wire_limits.clone()),
            doc_changed: doc_changed.clone(),
            approvals: approvals.clone(),
            delivered: delivered.clone(),
        };
        let loaded = PerShard::new(count);
        let dormant = PerShard::new(count);
        let memory = PerShard::new(count);
        let started = Instant::now();
        // Giving memory back is process-wide: one call at a time, whichever shard asks.
        let releasing = Arc::new(AtomicBool::new(false));
        for (index, rx) in receivers.into_iter().enumerate() {
            let worker = Worker {
                engine: Engine::new(shard_config(&config, index, count)),
                index,
                store: Arc::clone(&store),
                registry: Arc::clone(&registry),
                metrics: metrics.clone(),
                runtime: runtime.clone(),
                tx: senders[index].clone(),
                shards: senders.clone(),
                loaded: loaded.clone(),
                dormant: dormant.clone(),
                memory: memory.clone(),
                conns: HashMap::new(),
                edits: HashMap::new(),
                next_token: 0,
                doc_changed: doc_changed.clone(),
                approvals: approvals.clone(),
                delivered: delivered.clone(),
                started,
                release: Release::new(Arc::clone(&releasing)),
            };
            // Shard 0 keeps the name the hub's one thread had (profiles filter on it).
            let name = if index == 0 {
                "fieldsync-hub".to_owned()
            } else {
                format!("fieldsync-hub-{index}")
            };
            std::thread::Builder::new()
                .name(name)
                .spawn(move || worker.run(rx))?;
        }
        Ok(hub)
    }

    /// How many shards the engine is split into.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// Sends an input to the shards it concerns; false if the hub has stopped.
    pub fn send(&self, input: HubInput) -> bool {
        match input {
            HubInput::Open {
                conn,
                principal,
                outbox,
                dialed,
            } => self.shards.iter().all(|shard| {
                shard
                    .send(ToShard::Input(HubInput::Open {
                        conn,
                        principal: principal.clone(),
                        outbox: outbox.clone(),
                        dialed,
                    }))
                    .is_ok()
            }),
            HubInput::Engine(input, arrived) => {
                let mut sent = true;
                for (shard, input) in self.router.route(input) {
                    sent &= self.shards[shard]
                        .send(ToShard::Input(HubInput::Engine(input, arrived)))
                        .is_ok();
                }
                sent
            }
            HubInput::Edit { doc, edit, reply } => {
                let shard = self.router.shard_of(&doc);
                self.shards[shard]
                    .send(ToShard::Input(HubInput::Edit { doc, edit, reply }))
                    .is_ok()
            }
        }
    }

    pub fn engine_input(&self, input: Input) -> bool {
        self.send(HubInput::Engine(input, Instant::now()))
    }

    /// Makes a local change and waits until it is durable.
    pub async fn edit(
        &self,
        doc: DocumentId,
        edit: LocalEdit,
    ) -> Result<Vec<ChangeHash>, LocalEditError> {
        let (reply, rx) = oneshot::channel();
        if !self.send(HubInput::Edit { doc, edit, reply }) {
            return Err(LocalEditError::Storage(
                "the server is shutting down".into(),
            ));
        }
        rx.await.unwrap_or_else(|_| {
            Err(LocalEditError::Storage(
                "the server is shutting down".into(),
            ))
        })
    }

    /// Announcements of documents whose new content is durable.
    pub fn subscribe_changes(&self) -> broadcast::Receiver<DocumentId> {
        self.doc_changed.subscribe()
    }

    /// Every durable change with the stamp of the document's approvals then, whether a
    /// completion request waits and the document's stored position: what the desk's
    /// approvals queue (`desk::approvals::mirror`), the board, the signer and the desk's
    /// follower of the jobs follow. The stamp comes from the document in memory, so the
    /// queue rereads from disk only a job whose approvals changed. Taken only while someone
    /// listens (an edge's workers), so head office pays nothing for it.
    pub fn subscribe_approvals(&self) -> broadcast::Receiver<ApprovalsChange> {
        self.approvals.subscribe()
    }

    /// Documents a dialled server (head office) confirmed holding, with the heads it holds.
    pub fn subscribe_delivered(&self) -> broadcast::Receiver<(DocumentId, Vec<ChangeHash>)> {
        self.delivered.subscribe()
    }

    /// Stops every shard after everything queued so far.
    pub async fn shutdown(&self) {
        let mut done = Vec::new();
        for shard in &self.shards {
            let (tx, rx) = oneshot::channel();
            if shard.send(ToShard::Shutdown(tx)).is_ok() {
                done.push(rx);
            }
        }
        for rx in done {
            let _ = rx.await;
        }
    }
}

/// One shard: its engine and what it needs to carry out the effects.
struct Worker {
    engine: Engine,
    index: usize,
    store: Arc<Store>,
    registry: Arc<RwLock<Registry>>,
    metrics: SyncMetrics,
    runtime: tokio::runtime::Handle,
    /// This shard's own channel (completions of its loads and writes come back on it).
    tx: mpsc::Sender<ToShard>,
    /// Every shard's channel, this one's included.
    shards: Vec<mpsc::Sender<ToShard>>,
    /// Documents loaded per shard: the gauge is their sum.
    loaded: PerShard,
    /// Of those, the dormant ones (saved bytes only).
    dormant: PerShard,
    /// What each shard's documents take, as `limits.max_document_memory_mb` counts it.
    memory: PerShard,
    conns: HashMap<ConnId, tokio_mpsc::Sender<Outbound>>,
    edits: HashMap<u64, oneshot::Sender<Result<Vec<ChangeHash>, LocalEditError>>>,
    next_token: u64,
    doc_changed: broadcast::Sender<DocumentId>,
    approvals: broadcast::Sender<ApprovalsChange>,
    delivered: broadcast::Sender<(DocumentId, Vec<ChangeHash>)>,
    started: Instant,
    release: Release,
}

/// When the hub gives the allocator's free memory back to the system (issue 17).
///
/// glibc keeps what the process frees (see `fieldsync_malloc`): after a burst of loads and
/// syncs, about two thirds of the server's memory was free memory it kept. The hub asks for
/// it back after activity, on the first tick with no input during the tick before it (a
/// burst is over), or, on a server never quiet that long, at most once a minute; never
/// while nothing happened since the last time. The call runs on the blocking pool, one at a
/// time, so the hub's thread never waits for it.
#[derive(Debug)]
struct Release {
    /// Inputs since the last tick.
    input_since_tick: bool,
    /// Something happened (inputs, evictions) since memory was last given back.
    pending: bool,
    last: Instant,
    running: Arc<AtomicBool>,
}

impl Release {
    fn new(running: Arc<AtomicBool>) -> Self {
        Self {
            input_since_tick: false,
            pending: false,
            last: Instant::now(),
            running,
        }
    }

    /// Whether to give memory back at this tick.
    fn due(&mut self, evicted: bool) -> bool {
        let quiet = !self.input_since_tick;
        self.pending |= self.input_since_tick || evicted;
        self.input_since_tick = false;
        let due = self.pending
            && (quiet || self.last.elapsed() >= RELEASE_AT_LEAST_EVERY)
            && !self.running.swap(true, Ordering::AcqRel);
        if due {
            self.pending = false;
            self.last = Instant::now();
        }
        due
    }
}

/// One count per shard, shown as their sum: a gauge over the whole node that each shard's
/// thread updates with its own part.
#[derive(Clone, Debug)]
struct PerShard(Arc<[AtomicUsize]>);

impl PerShard {
    fn new(count: usize) -> Self {
        Self((0..count).map(|_| AtomicUsize::new(0)).collect())
    }

    /// Sets shard `index`'s part to `value`; returns the sum over every shard.
    fn set(&self, index: usize, value: usize) -> usize {
        self.0[index].store(value, Ordering::Relaxed);
        self.0.iter().map(|n| n.load(Ordering::Relaxed)).sum()
    }
}

impl Worker {
    fn now_ms(&self) -> i64 {
        i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    fn run(mut self, rx: mpsc::Receiver<ToShard>) {
        let mut next_tick = Instant::now() + TICK;
        loop {
            let timeout = next_tick.saturating_duration_since(Instant::now());
            match rx.recv_timeout(timeout) {
                Ok(ToShard::Shutdown(done)) => {
                    let _ = done.send(());
                    return;
                }
                Ok(ToShard::Input(input)) => self.on_input(input),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if Instant::now() >= next_tick {
                next_tick = Instant::now() + TICK;
                let freed = |s: &EngineStats| (s.docs_evicted_total, s.docs_slept_total);
                let before = freed(self.engine.stats());
                self.feed(Input::Tick, None);
                if self.release.due(freed(self.engine.stats()) != before) {
                    self.release_free_memory();
                }
            }
        }
    }

    /// Gives the allocator's free memory back on the blocking pool (see [`Release`]).
    fn release_free_memory(&self) {
        let running = Arc::clone(&self.release.running);
        let metrics = self.metrics.clone();
        self.runtime.spawn_blocking(move || {
            fieldsync_malloc::release_free_memory();
            if let Some(bytes) = fieldsync_malloc::in_use_bytes() {
                metrics
                    .heap_in_use
                    .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
            metrics.memory_released.inc();
            running.store(false, Ordering::Release);
        });
    }

    fn on_input(&mut self, input: HubInput) {
        self.release.input_since_tick = true;
        match input {
            HubInput::Open {
                conn,
                principal,
                outbox,
                dialed,
            } => {
                self.conns.insert(conn, outbox);
                let input = if dialed {
                    Input::Dialed { conn, principal }
                } else {
                    Input::Connected { conn, principal }
                };
                self.feed(input, None);
            }
            HubInput::Engine(input, arrived) => {
                if let Input::Disconnected { conn } = &input {
                    self.conns.remove(conn);
                }
                // A frame every shard hears (the handshake) is timed by the home shard only.
                let is_frame = match &input {
                    Input::Frame { .. } => true,
                    Input::Message { message, .. } => {
                        self.index == 0 || message.document_id().is_some()
                    }
                    _ => false,
                };
                self.feed(input, is_frame.then_some(arrived));
            }
            HubInput::Edit { doc, edit, reply } => {
                let token = self.next_token;
                self.next_token += 1;
                self.edits.insert(token, reply);
                self.feed(Input::Edit { doc, edit, token }, None);
            }
        }
    }

    fn feed(&mut self, input: Input, arrived: Option<Instant>) {
        let now = self.now_ms();
        let effects = {
            let registry = self
                .registry
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.engine.handle(input, now, &*registry)
        };
        for effect in effects {
            self.perform(effect);
        }
        let index = self.index;
        let loaded = self.loaded.set(index, self.engine.loaded_documents());
        set_count(&self.metrics.loaded_documents, loaded);
        let dormant = self.dormant.set(index, self.engine.dormant_documents());
        set_count(&self.metrics.dormant_documents, dormant);
        let memory = self.memory.set(index, self.engine.document_memory());
        set_count(&self.metrics.document_memory, memory);
        if let Some(arrived) = arrived {
            self.metrics.observe_sync(arrived.elapsed());
        }
    }

    fn perform(&mut self, effect: Effect) {
        match effect {
            Effect::Send { conn, bytes } => {
                let Some(outbox) = self.conns.get(&conn) else {
                    return;
                };
                self.metrics.messages_out.inc();
                self.metrics.bytes_out.inc_by(bytes.len() as u64);
                match outbox.try_send(Outbound::Frame(bytes)) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        // The peer does not read fast enough: drop it rather than buffer
                        // without bound. Every shard forgets it and drops its clone of the
                        // sender, which closes the connection's task.
                        self.metrics.refused("slow_consumer");
                        tracing::warn!(?conn, "closing a connection whose send queue is full");
                        self.conns.remove(&conn);
                        for shard in &self.shards {
                            let _ = shard.send(ToShard::Input(HubInput::Engine(
                                Input::Disconnected { conn },
                                Instant::now(),
                            )));
                        }
                    }
                    Err(TrySendError::Closed(_)) => {
                        // The connection's task has ended (another shard closed it, or the
                        // peer went): its `Disconnected` is on its way to every shard.
                        self.conns.remove(&conn);
                    }
                }
            }
            Effect::Close { conn, code, reason } => {
                if let Some(outbox) = self.conns.remove(&conn) {
                    let _ = outbox.try_send(Outbound::Close(code, reason));
                }
            }
            Effect::LoadDoc { doc } => {
                let store = Arc::clone(&self.store);
                let tx = self.tx.clone();
                self.runtime.spawn_blocking(move || {
                    let chunks = store.load_doc(&doc.to_string()).map_err(|e| e.to_string());
                    let _ = tx.send(ToShard::Input(HubInput::Engine(
                        Input::DocLoaded { doc, chunks },
                        Instant::now(),
                    )));
                });
            }
            Effect::LoadSyncState { doc, storage_id } => {
                let store = Arc::clone(&self.store);
                let tx = self.tx.clone();
                self.runtime.spawn_blocking(move || {
                    let state = store
                        .sync_state(storage_id.as_str(), &doc.to_string())
                        .unwrap_or_else(|e| {
                            tracing::warn!(%doc, error = %e, "cannot read a sync state; starting afresh");
                            None
                        });
                    let _ = tx.send(ToShard::Input(HubInput::Engine(
                        Input::SyncStateLoaded {
                            doc,
                            storage_id,
                            state,
                        },
                        Instant::now(),
                    )));
                });
            }
            Effect::Write { id, op } => {
                let tx = self.tx.clone();
                let metrics = self.metrics.clone();
                let queued = Instant::now();
                let done = move |result: Result<(), String>| {
                    metrics.observe_storage(queued.elapsed());
                    let _ = tx.send(ToShard::Input(HubInput::Engine(
                        Input::WriteDone { id, result },
                        Instant::now(),
                    )));
                };
                self.store.perform(op, done);
            }
            Effect::DocChanged { doc, .. } => {
                let _ = self.doc_changed.send(doc);
                let listened = self.approvals.receiver_count() > 0;
                // The position first: the document in memory holds at least every change
                // stored up to it (changes are applied before they are written).
                let seq = if listened {
                    // (`sync::progress` reads positions the same way; the hub does not
                    // depend on it, which depends on the hub's feed.)
                    self.store.doc_seq(&doc.to_string()).ok().flatten()
                } else {
                    None
                };
                if listened {
                    // Judged here, from the document in memory, so a storm of edits does not
                    // make the signer load and read every changed job from disk. A document
                    // not in memory any more is passed on as pending: the signer reads it.
                    let pending = self
                        .engine
                        .document(&doc)
                        .is_none_or(fieldsync_shared::job::doc::completion_pending);
                    // A map lookup for a job without requests; a walk of a few dozen entries
                    // for one with some.
                    let stamp = self.engine.document(&doc).map(approvals_stamp);
                    let _ = self.approvals.send(ApprovalsChange {
                        doc,
                        stamp,
                        seq,
                        completion_pending: pending,
                    });
                }
            }
            Effect::EditDone { token, result, .. } => {
                if let Some(reply) = self.edits.remove(&token) {
                    let _ = reply.send(result);
                }
            }
            Effect::DocUnavailable { .. } => {}
            Effect::Delivered { doc, heads, .. } => {
                let _ = self.delivered.send((doc, heads));
            }
            Effect::NewDocument { doc, by } => {
                if let Principal::Branch { branch_id } = by {
                    self.registry
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .adopt(&self.store, doc, branch_id);
                }
            }
            Effect::Refused {
                conn,
                reason,
                detail,
            } => {
                self.metrics.refused(reason);
                // A peer writing what it may not is worth an operator's attention.
                if matches!(reason, "write_forbidden" | "depends_on_refused") {
                    tracing::warn!(?conn, reason, detail, "refused");
                } else {
                    tracing::info!(?conn, reason, detail, "refused");
                }
            }
        }
    }
}

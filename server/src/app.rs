//! The server as a library: open the data directory, start the hub, build the router, serve
//! until shutdown. `main.rs` binds and passes ctrl-c; tests bind port 0 and call [`serve`].

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::serve::ListenerExt;
use fieldsync_shared::ids::{BranchId, DocumentId};
use fieldsync_shared::keys::{KeyError, KeyPair};
use fieldsync_shared::stored::LoadStrategy;
use fieldsync_shared::sync::{EngineConfig, EngineRole, Input, Principal};
use fieldsync_storage::{StorageError, Store, StoreConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::TokenAuthority;
use crate::clock::Clock;
use crate::config::{Config, Role};
use crate::data_dir::{DataDir, ROLE_META};
use crate::desk::approvals::mirror::ApprovalMirror;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::registry::{Registry, RegistryError, Tier};

/// Why the server could not start. Each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("server key: {0}")]
    Key(#[from] KeyError),
    #[error("database: {0}")]
    Storage(#[from] StorageError),
    #[error("records: {0}")]
    Registry(#[from] RegistryError),
    #[error("branch_id {0:?} in the config is not a valid id")]
    BranchId(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("token authority: {0}")]
    Tokens(String),
    #[error(
        "data directory {path} belongs to a server of role {}, not {}: use that role, or \
         another --data-dir", recorded.as_str(), asked.as_str()
    )]
    WrongRole {
        path: std::path::PathBuf,
        recorded: Role,
        asked: Role,
    },
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// What every request handler and connection task can reach.
pub struct AppState {
    pub config: Config,
    /// Where every instant the server records comes from (see `clock`).
    pub clock: Clock,
    pub branch_id: BranchId,
    pub data_dir: DataDir,
    pub server_key: KeyPair,
    pub tokens: TokenAuthority,
    pub store: Arc<Store>,
    pub registry: Arc<RwLock<Registry>>,
    pub hub: Hub,
    pub metrics: Arc<Metrics>,
    /// Flips to true when the server shuts down; connection tasks watch it.
    pub shutdown: watch::Sender<bool>,
    pub next_conn: AtomicU64,
    /// The registry generation stamp last seen in the store (see `registry`).
    pub seen_generation: AtomicU64,
    /// Held while the records are re-read, so a second reader waits for the merge instead of
    /// taking the generation as seen before the records it stands for are in memory.
    reload_lock: std::sync::Mutex<()>,
    /// Serialises assignment changes (see `api::create_job`).
    pub assign_lock: tokio::sync::Mutex<()>,
    /// Edge: ids of reports as the signer stores them (the upstream outbox listens).
    pub reports_signed: tokio::sync::broadcast::Sender<String>,
    /// Edge: complaint documents as the desk writes them (the upstream outbox listens).
    pub complaints_published: tokio::sync::broadcast::Sender<DocumentId>,
    /// The desk's approvals queue (R12, R18, R31), mirrored from the stored jobs.
    pub approvals: ApprovalMirror,
    /// `[tls]`: the listener serves HTTPS and `wss://` with this (`crate::tls`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// How stored documents are loaded (the engine's loader too): one `load` of every chunk,
    /// or the pre-issue-19 loader under [`BASELINE_ENV`].
    pub doc_load: LoadStrategy,
}

/// `FIELDSYNC_BASELINE=issue-19` runs the server as before issue 19 (chunk-by-chunk loads, no
/// compaction by the storage writer, SQLite's own checkpoints), for the load figures
/// (`tests/bin/load_figures.rs`) to measure it beside the current one. Never for use.
pub const BASELINE_ENV: &str = "FIELDSYNC_BASELINE";

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("branch_id", &self.branch_id)
            .field("data_dir", &self.data_dir)
            .finish()
    }
}

impl AppState {
    /// Opens the data directory (creating keys and database on first run) and starts the hub.
    pub fn open(config: Config, runtime: tokio::runtime::Handle) -> Result<Arc<Self>, StartError> {
        Self::open_with_clock(config, Clock::system(), runtime)
    }

    /// [`open`](Self::open) with a given clock (tests run servers on a manual one).
    pub fn open_with_clock(
        config: Config,
        clock: Clock,
        runtime: tokio::runtime::Handle,
    ) -> Result<Arc<Self>, StartError> {
        // First, so that a bad certificate, key or CA file stops the server before it
        // touches anything.
        let tls = crate::tls::check(&config)?;
        let data_dir = DataDir::open(&config.data_dir).map_err(|source| StartError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        if cfg!(feature = "unchecked-writes") {
            tracing::warn!(
                "this build does not check write authority (feature unchecked-writes): for \
                 measurement only, never for use"
            );
        }
        let (server_key, created) = data_dir.load_or_create_server_key()?;
        if created {
            tracing::info!(key_id = %server_key.id(), path = %data_dir.server_key_path().display(), "created server key");
        }
        let branch_id = BranchId::new(config.branch_id.clone())
            .map_err(|_| StartError::BranchId(config.branch_id.clone()))?;
        let issuer = match config.role {
            Role::Edge => branch_id.to_string(),
            Role::HeadOffice => "head-office".to_owned(),
        };
        let tokens = TokenAuthority::new(&server_key, issuer)
            .map_err(|e| StartError::Tokens(e.to_string()))?;
        let baseline = std::env::var(BASELINE_ENV).is_ok_and(|v| v == "issue-19");
        if baseline {
            tracing::warn!(
                "{BASELINE_ENV}=issue-19: loading and storing documents as before issue 19, \
                 for measurement only, never for use"
            );
        }
        let (store_config, doc_load) = if baseline {
            (
                StoreConfig::without_maintenance(),
                LoadStrategy::ChunkByChunk,
            )
        } else {
            (StoreConfig::default(), LoadStrategy::Concatenated)
        };
        let store = Arc::new(Store::open(data_dir.database_path(), store_config)?);
        // A data directory serves one role for life: the keys, tokens and records in it are
        // that role's. The role is recorded at first start and checked at every later one.
        match crate::data_dir::recorded_role(&store)? {
            None => store
                .put_meta(ROLE_META.0, ROLE_META.1, config.role.as_str().into())
                .wait()?,
            Some(role) if role == config.role => {}
            Some(role) => {
                return Err(StartError::WrongRole {
                    path: config.data_dir.clone(),
                    recorded: role,
                    asked: config.role,
                });
            }
        }
        let seen_generation = Registry::stored_generation(&store)?;
        let tier = match config.role {
            Role::Edge => Tier::Edge,
            Role::HeadOffice => Tier::HeadOffice,
        };
        let registry = Arc::new(RwLock::new(Registry::load(&store)?.with_tier(tier)));
        let metrics = Arc::new(Metrics::default());
        // An edge's peer id is what head office binds a branch token to
        // (`Principal::peer_id_stem`): it joins head office under it.
        let peer_id = match config.role {
            Role::Edge => format!("branch-{branch_id}"),
            Role::HeadOffice => "head-office".to_owned(),
        };
        let mut engine = EngineConfig::new(EngineRole::Server, peer_id);
        engine.storage_id = Some(format!("storage-{}", server_key.id()));
        engine.wire_limits.max_message_bytes = config.limits.max_frame_bytes;
        engine.sync_limits = config.limits.sync_limits();
        engine.max_loaded_documents = config.limits.max_loaded_documents;
        engine.document_idle_ms =
            i64::try_from(config.limits.document_idle.as_millis()).unwrap_or(i64::MAX);
        // Head office takes in the documents branches send; an edge creates its own.
        engine.accept_new_documents = config.role == Role::HeadOffice;
        engine.load = doc_load;
        let hub = Hub::start(
            engine,
            Arc::clone(&store),
            Arc::clone(&registry),
            Arc::clone(&metrics),
            runtime,
        )?;
        let (shutdown, _) = watch::channel(false);
        let approvals = ApprovalMirror::new(Arc::clone(&metrics));
        Ok(Arc::new(Self {
            config,
            clock,
            branch_id,
            data_dir,
            server_key,
            tokens,
            store,
            registry,
            hub,
            metrics,
            shutdown,
            next_conn: AtomicU64::new(1),
            seen_generation: AtomicU64::new(seen_generation),
            reload_lock: std::sync::Mutex::new(()),
            assign_lock: tokio::sync::Mutex::new(()),
            reports_signed: tokio::sync::broadcast::channel(1024).0,
            complaints_published: tokio::sync::broadcast::channel(1024).0,
            approvals,
            tls,
            doc_load,
        }))
    }

    pub fn registry_read(&self) -> RwLockReadGuard<'_, Registry> {
        self.registry
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn registry_write(&self) -> RwLockWriteGuard<'_, Registry> {
        self.registry
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A document as stored (not as the engine holds it in memory), read on the blocking
    /// pool: what the signer, head office's verifier and the upstream outbox look at, since
    /// only stored content may be acted on. `Ok(None)`: nothing is stored under that id.
    pub async fn load_document(
        &self,
        doc: fieldsync_shared::ids::DocumentId,
    ) -> Result<Option<automerge::Automerge>, String> {
        let store = Arc::clone(&self.store);
        let strategy = self.doc_load;
        tokio::task::spawn_blocking(move || {
            let Some(chunks) = store
                .load_doc(&doc.to_string())
                .map_err(|e| e.to_string())?
            else {
                return Ok(None);
            };
            strategy.load(&chunks).map(Some).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| format!("loading {doc}: {e}"))?
    }

    /// Picks up record changes made by another process (the CLI) and applies revocations to
    /// live connections.
    pub fn reload_registry_if_changed(&self) -> Result<(), RegistryError> {
        let _one_reader = self
            .reload_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let stored = Registry::stored_generation(&self.store)?;
        if stored == self.seen_generation.load(Ordering::Relaxed) {
            return Ok(());
        }
        let fresh = Registry::load_devices(&self.store)?;
        let revoked = self.registry_write().merge_devices(&fresh);
        // Only now are the records of generation `stored` in memory.
        self.seen_generation.store(stored, Ordering::Relaxed);
        for device in revoked {
            tracing::info!(device = %device.device_id, "device revoked: closing its connections");
            self.hub.engine_input(Input::Kick {
                principal: Principal::Device {
                    device_id: device.device_id.clone(),
                    technician: device.technician.clone(),
                },
                reason: format!("device {} was revoked", device.device_id),
            });
        }
        Ok(())
    }
}

/// The router, apart from `main` so tests can drive it directly.
pub fn app(state: Arc<AppState>) -> Router {
    // Request bodies up to the frame limit: a device's handover carries changes as big as a
    // sync message may (the desk's JSON bodies are far smaller).
    let max_body = state.config.limits.max_frame_bytes;
    let body_limit = axum::extract::DefaultBodyLimit::max(max_body);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/sync", get(crate::ws::sync_endpoint))
        .merge(axum::Router::from(crate::desk::api()))
        .layer(body_limit)
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                crate::error::json_errors(max_body, request, next)
            },
        ))
        .with_state(state)
}

async fn healthz(State(state): State<Arc<AppState>>) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({
        "status": "ok",
        "role": match state.config.role {
            Role::Edge => "edge",
            Role::HeadOffice => "head-office",
        },
        "branch_id": state.branch_id,
        "key_id": state.server_key.id().as_str(),
    }))
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state
            .metrics
            .render(state.config.role, state.config.upstream.is_some()),
    )
}

/// Serves until `shutdown` resolves, then drains: no new connections, open ones are told the
/// server is going away and get `shutdown_grace` to finish, every queued write is flushed.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let poller = {
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                let state = Arc::clone(&state);
                let result =
                    tokio::task::spawn_blocking(move || state.reload_registry_if_changed()).await;
                if let Ok(Err(e)) = result {
                    tracing::warn!(error = %e, "cannot reload records");
                }
            }
        })
    };
    let mut workers = Vec::new();
    match state.config.role {
        Role::Edge => {
            workers.push(tokio::spawn(crate::reports::run_signer(Arc::clone(&state))));
            workers.push(tokio::spawn(crate::desk::approvals::mirror::run(
                Arc::clone(&state),
            )));
            if let Some(upstream) = state.config.upstream.clone() {
                workers.push(tokio::spawn(crate::upstream::run(
                    Arc::clone(&state),
                    upstream,
                )));
            }
        }
        Role::HeadOffice => {
            // Head office keeps no jobs of its own: its approvals queue is empty.
            state.approvals.mark_built();
            workers.push(tokio::spawn(crate::head_office::run(Arc::clone(&state))));
        }
    }
    let signal = state.shutdown.clone();
    let router = app(Arc::clone(&state));
    let graceful = async move {
        shutdown.await;
        let _ = signal.send(true);
    };
    let result = match &state.tls {
        Some(config) => {
            let listener = crate::tls::TlsListener::new(listener, Arc::clone(config))?;
            axum::serve(listener, router)
                .with_graceful_shutdown(graceful)
                .await
        }
        None => {
            if let Some(warning) = crate::tls::clear_text_warning(listener.local_addr()?) {
                tracing::warn!("{warning}");
            }
            // Sync frames are small and answered at once: without TCP_NODELAY a reply that
            // follows a send waits for the peer's delayed ACK (about 40 ms on Linux) on every
            // round trip.
            let listener = listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "set TCP_NODELAY");
                }
            });
            axum::serve(listener, router)
                .with_graceful_shutdown(graceful)
                .await
        }
    };
    poller.abort();
    for worker in workers {
        worker.abort();
    }
    let _ = state.shutdown.send(true);
    let deadline = Instant::now() + state.config.limits.shutdown_grace;
    while state.metrics.connections.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    state.hub.shutdown().await;
    let store = Arc::clone(&state.store);
    match tokio::task::spawn_blocking(move || store.flush().wait()).await {
        Ok(Ok(())) => tracing::info!("storage flushed"),
        Ok(Err(e)) => tracing::error!(error = %e, "flushing storage failed"),
        Err(e) => tracing::error!(error = %e, "flushing storage failed"),
    }
    result
}

//! The sync node: what every server has whatever its role. The data directory and its keys,
//! the token authority, the store, the records (the access policy), the hub that runs the
//! sync engine, the sync metrics, the clock. Each role's state holds an `Arc<Node>` and adds
//! its own (`edge::Edge`, `head_office::HeadOffice`); `app` composes them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use axum::http::HeaderMap;
use fieldsync_shared::ids::{BranchId, DeviceId, DocumentId, TechnicianId};
use fieldsync_shared::keys::{KeyError, KeyPair};
use fieldsync_shared::stored::LoadStrategy;
use fieldsync_shared::sync::{EngineConfig, EngineRole, Input, Principal};
use fieldsync_storage::{StorageError, Store, StoreConfig};
use tokio::sync::watch;

use crate::auth::{Actor, AuthError, DeskRole, Subject, TokenAuthority, role_list};
use crate::clock::Clock;
use crate::config::{Config, Role};
use crate::data_dir::{DataDir, ROLE_META};
use crate::http::error::ApiError;
use crate::http::token_from;
use crate::metrics::{Registry as MetricsRegistry, SyncMetrics};
use crate::sync::hub::Hub;
use crate::sync::registry::{Registry, RegistryError, Tier};

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
    #[error(
        "this edge has no branch id yet: give one at its first start (`fieldsync serve \
         --branch-id north-01`, `branch_id` in the config, or FIELDSYNC_BRANCH_ID); it is \
         recorded in {0} and every token the edge issues names it"
    )]
    NoBranchId(std::path::PathBuf),
    #[error(
        "data directory {path} serves branch {recorded}, but the config says {asked}: remove \
         branch_id from the config, or rename the branch (`fieldsync branch rename --to \
         {asked}`, with the server stopped)"
    )]
    BranchRenamed {
        path: std::path::PathBuf,
        recorded: BranchId,
        asked: String,
    },
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
    /// Head office's archive (`[storage] url`) could not be opened.
    #[error("head office's archive: {0}")]
    Archive(String),
}

/// What every request handler, connection task and worker can reach, whatever the role.
pub struct Node {
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
    pub metrics: SyncMetrics,
    /// Flips to true when the server shuts down; connection tasks watch it.
    pub shutdown: watch::Sender<bool>,
    pub next_conn: AtomicU64,
    /// The registry generation stamp last seen in the store (see `registry`).
    seen_generation: AtomicU64,
    /// Held while the records are re-read, so a second reader waits for the merge instead of
    /// taking the generation as seen before the records it stands for are in memory.
    reload_lock: std::sync::Mutex<()>,
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

/// An edge's branch id: the one its directory recorded at the first start (a config that
/// names another is refused: tokens and signed reports name the recorded one), else the
/// config's, recorded now; none at all is refused.
fn edge_branch(config: &Config, store: &Store) -> Result<BranchId, StartError> {
    let recorded = crate::data_dir::recorded_branch(store)?;
    match (recorded, &config.branch_id) {
        (Some(recorded), Some(asked)) if recorded.as_str() != asked => {
            Err(StartError::BranchRenamed {
                path: config.data_dir.clone(),
                recorded,
                asked: asked.clone(),
            })
        }
        (Some(recorded), _) => Ok(recorded),
        (None, None) => Err(StartError::NoBranchId(config.data_dir.clone())),
        (None, Some(asked)) => {
            let id =
                BranchId::new(asked.clone()).map_err(|_| StartError::BranchId(asked.clone()))?;
            let (namespace, key) = crate::data_dir::BRANCH_META;
            store
                .put_meta(namespace, key, id.as_str().as_bytes().to_vec())
                .wait()?;
            Ok(id)
        }
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("role", &self.config.role)
            .field("branch_id", &self.branch_id)
            .field("data_dir", &self.data_dir)
            .finish()
    }
}

impl Node {
    /// Opens the data directory (creating keys and database on first run), checks it serves
    /// `config.role`, and starts the hub; registers the sync metrics in `metrics`.
    pub fn open(
        config: Config,
        clock: Clock,
        runtime: tokio::runtime::Handle,
        metrics: &mut MetricsRegistry,
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
        let branch_id = match config.role {
            Role::Edge => edge_branch(&config, &store)?,
            Role::HeadOffice => {
                let name = config.branch_id.as_deref().unwrap_or("head-office");
                BranchId::new(name).map_err(|_| StartError::BranchId(name.to_owned()))?
            }
        };
        let issuer = match config.role {
            Role::Edge => branch_id.to_string(),
            Role::HeadOffice => "head-office".to_owned(),
        };
        let tokens = TokenAuthority::new(&server_key, issuer)
            .map_err(|e| StartError::Tokens(e.to_string()))?;
        let seen_generation = Registry::stored_generation(&store)?;
        let tier = match config.role {
            Role::Edge => Tier::Edge,
            Role::HeadOffice => Tier::HeadOffice,
        };
        let registry = Arc::new(RwLock::new(Registry::load(&store)?.with_tier(tier)));
        let sync_metrics = SyncMetrics::registered(metrics);
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
        engine.max_document_memory = config.limits.max_document_memory();
        engine.document_idle_ms =
            i64::try_from(config.limits.document_idle.as_millis()).unwrap_or(i64::MAX);
        engine.document_dormant_ms = Some(config.limits.document_dormant)
            .filter(|d| !d.is_zero())
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        // Head office takes in the documents branches send; an edge creates its own.
        engine.accept_new_documents = config.role == Role::HeadOffice;
        engine.load = doc_load;
        let hub = Hub::start(
            engine,
            config.limits.hub_shards(),
            Arc::clone(&store),
            Arc::clone(&registry),
            sync_metrics.clone(),
            runtime,
        )?;
        let (shutdown, _) = watch::channel(false);
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
            metrics: sync_metrics,
            shutdown,
            next_conn: AtomicU64::new(1),
            seen_generation: AtomicU64::new(seen_generation),
            reload_lock: std::sync::Mutex::new(()),
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
        doc: DocumentId,
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

    /// Checks a token and turns it into the principal the engine knows, or the 401 to send.
    pub fn authenticate(&self, token: Option<String>) -> Result<Principal, AuthError> {
        let token = token.ok_or(AuthError::Missing)?;
        let verified = self.tokens.verify(&token, self.clock.now())?;
        match verified.subject {
            Subject::Device(device_id) => {
                if self.registry_read().device(&device_id).is_none() {
                    self.recheck_records();
                }
                let registry = self.registry_read();
                let record = registry.device(&device_id).ok_or_else(|| {
                    AuthError::Revoked(format!("device {device_id} is not enrolled"))
                })?;
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
                if self.registry_read().branch(&branch_id).is_none() {
                    self.recheck_records();
                }
                if self.registry_read().branch(&branch_id).is_none() {
                    return Err(AuthError::Revoked(format!(
                        "branch {branch_id} is not enrolled at head office"
                    )));
                }
                Ok(Principal::Branch { branch_id })
            }
        }
    }

    /// A token we signed names a device (or branch) these records do not hold: it may have
    /// been enrolled by another process (the CLI) since the last poll of the records. Look now
    /// rather than refuse it, since a device treats a refusal as final. One small read of the
    /// store, and only on this path, which needs a token signed by this server.
    fn recheck_records(&self) {
        if let Err(e) = self.reload_registry_if_changed() {
            tracing::warn!(error = %e, "cannot re-read the records");
        }
    }

    /// The request's token as a principal, or the 401 (counted by reason).
    pub fn principal(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        self.authenticate(token_from(headers, None)).map_err(|e| {
            self.metrics.refused(e.code());
            ApiError::unauthorized(&e)
        })
    }

    /// Checks the desk token and that its role may do `action`; a role that may not gets 403
    /// saying which roles may. A token naming a person (`fieldsync desk token --user`) is
    /// refused once their account is disabled or has another role.
    pub fn authorize(
        &self,
        headers: &HeaderMap,
        allowed: &[DeskRole],
        action: &str,
    ) -> Result<DeskRole, ApiError> {
        self.authorize_actor(headers, allowed, action)
            .map(|actor| actor.role)
    }

    /// [`authorize`](Self::authorize), and the person the token acts for, if it names one:
    /// what the audit log records as who did it. The account is read from the store here
    /// (one point read), so the CLI's `user disable` takes effect at the next call.
    pub fn authorize_actor(
        &self,
        headers: &HeaderMap,
        allowed: &[DeskRole],
        action: &str,
    ) -> Result<Actor, ApiError> {
        let role = self.authorize_role(headers, allowed, action)?;
        let person = token_from(headers, None)
            .and_then(|t| self.tokens.verify(&t, self.clock.now()).ok())
            .and_then(|v| v.person);
        let Some(person) = person else {
            return Ok(Actor { role, person: None });
        };
        let account = crate::accounts::load(&self.store, &person)
            .map_err(|e| ApiError::internal("storage_error", e))?;
        match account {
            Some(a) if !a.user.disabled && a.user.desk_role() == Some(role) => Ok(Actor {
                role,
                person: Some(person),
            }),
            Some(a) if !a.user.disabled => Err(ApiError::forbidden(format!(
                "the token acts for {person} as {}, but their account's role is now {}",
                role.as_str(),
                a.user.role
            ))),
            _ => {
                self.metrics.refused("revoked");
                Err(ApiError::unauthorized(&AuthError::Revoked(format!(
                    "the token acts for {person}, who has no enabled account"
                ))))
            }
        }
    }

    fn authorize_role(
        &self,
        headers: &HeaderMap,
        allowed: &[DeskRole],
        action: &str,
    ) -> Result<DeskRole, ApiError> {
        let Principal::Desk { role } = self.principal(headers)? else {
            return Err(ApiError::forbidden(
                "the desk API needs a desk token (`fieldsync desk token --role …`)",
            ));
        };
        let role = DeskRole::parse(&role)
            .ok_or_else(|| ApiError::forbidden(format!("unknown desk role {role:?}")))?;
        if !allowed.contains(&role) {
            return Err(ApiError::forbidden(format!(
                "role {} may not {action}: that needs {}",
                role.as_str(),
                role_list(allowed)
            )));
        }
        Ok(role)
    }

    /// Checks that the request carries an enrolled branch's token (head office; `what` is
    /// named in the 403 another token gets) and returns the branch.
    pub fn authorize_branch(&self, headers: &HeaderMap, what: &str) -> Result<BranchId, ApiError> {
        match self.principal(headers)? {
            Principal::Branch { branch_id } => Ok(branch_id),
            Principal::Desk { role } => Err(ApiError::forbidden(format!(
                "{what} answers branch tokens only (`fieldsync branch token`), not a desk token \
                 (role {role})"
            ))),
            _ => Err(ApiError::forbidden(format!(
                "{what} answers branch tokens only (`fieldsync branch token`)"
            ))),
        }
    }

    /// Checks that the request carries a device's token (for `what`, named in the 403 a desk
    /// token gets) and returns the device and its technician.
    pub fn authorize_device(
        &self,
        headers: &HeaderMap,
        what: &str,
    ) -> Result<(DeviceId, TechnicianId), ApiError> {
        match self.principal(headers)? {
            Principal::Device {
                device_id,
                technician,
            } => Ok((device_id, technician)),
            Principal::Desk { role } => Err(ApiError::forbidden(format!(
                "{what} answers device tokens only, not a desk token (role {role})"
            ))),
            _ => Err(ApiError::forbidden(format!(
                "{what} answers device tokens only"
            ))),
        }
    }
}

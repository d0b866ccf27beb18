//! [`Device`]: a technician's device. A local store that works fully offline, typed job edits
//! that are durable before they return, the customer's signed acknowledgement, and background
//! sync with the branch server.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use automerge::{ActorId, Automerge, ChangeHash};
use fieldsync_report_print::{PrintError, PrintOptions, Printed};
use fieldsync_shared::ids::{DeviceId, DocumentId, TechnicianId};
use fieldsync_shared::job::approvals::{
    Approval, ApprovalKind, TravelExpense, read_approvals, request_approval,
};
use fieldsync_shared::job::attachments::{AttachmentKind, AttachmentRef, add_attachment};
use fieldsync_shared::job::doc::{
    EditError, FieldConflict, JobDoc, PartDraft, Resolution, ResolutionRecord, SchemaError,
    Unresolved, conflicts, read_job, read_job_at, resolutions, unresolved,
};
use fieldsync_shared::job::index::read_index;
use fieldsync_shared::job::{
    Acknowledgement, CheckOut, Completion, Job, PartLineId, SafetyBriefing, Training,
};
use fieldsync_shared::keys::{KeyError, KeyPair, PublicKey};
use fieldsync_shared::protocol::SyncLimits;
use fieldsync_shared::report::{
    AckDraft, AckMatch, ReportError, acknowledged_content, acknowledgement_matches,
    sign_acknowledgement,
};
use fieldsync_shared::rules::{Missing, acknowledgement_blockers, completeness};
use fieldsync_shared::sync::{EngineConfig, EngineRole, LocalEdit, LocalEditError};
use fieldsync_shared::time::{Money, Timestamp};
use fieldsync_storage::{StorageError, Store, StoreConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use crate::attachments::{LocalBlobs, UploadOutcome, emit_upload, upload_pending};
use crate::edit::{EditFailure, JobEdit, edit_automerge};
use crate::enroll::{DeviceToken, Enrollment, KeyRenewal};
use crate::events::{Event, SyncState};
use crate::handoff::Handoff;
use crate::node::{self, DEVICE, DocView, Hooks, INDEX, Listed, Node, NodeConfig, now};
use crate::summary::{Content, JobState, Summary};
use crate::sync::{Context, SyncOptions, supervise};
use crate::tls::ClientTls;

/// Why a device operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("local store: {0}")]
    Storage(#[from] StorageError),
    #[error("device key: {0}")]
    Key(#[from] KeyError),
    #[error("the store belongs to {stored}, not {given}: one store is one device's")]
    IdentityMismatch { stored: String, given: String },
    #[error("the store {0} has no device identity: open it once with a DeviceConfig")]
    NoIdentity(PathBuf),
    #[error("no job {0} on this device")]
    NotFound(DocumentId),
    #[error("job {job} cannot be read: {source}")]
    Schema {
        job: DocumentId,
        #[source]
        source: SchemaError,
    },
    /// A typed edit refused (unknown part line, a newer schema…); nothing was changed.
    #[error("edit refused: {0}")]
    Edit(#[from] EditError),
    /// The job is not ready to be finalised; every missing item is listed.
    #[error("the job is not complete: {}", .0.iter().map(|m| m.message.as_str()).collect::<Vec<_>>().join("; "))]
    Incomplete(Vec<Missing>),
    /// The customer cannot sign yet: every item R7, R8's form, R9, R11 or R16 still needs is
    /// listed, so the customer signs once, after the technician has recorded them all.
    #[error("the customer cannot sign yet: {}", .0.iter().map(|m| m.message.as_str()).collect::<Vec<_>>().join("; "))]
    NotReadyToSign(Vec<Missing>),
    #[error("acknowledgement: {0}")]
    Report(#[from] ReportError),
    /// The service report could not be printed.
    #[error("service report: {0}")]
    Print(#[from] PrintError),
    /// The engine refused or could not store the edit.
    #[error("{0}")]
    Engine(#[from] LocalEditError),
    #[error("the device has been closed")]
    Closed,
    /// An approval request that cannot be sent as it is (no reason, R18 without an amount…).
    #[error("approval request: {0}")]
    InvalidApproval(String),
    /// Enrollment by code failed (refused by the server, or it could not be reached).
    #[error("enrollment: {0}")]
    Enroll(#[from] crate::enroll::EnrollError),
    /// `enroll_with_code` on a store that already has a device identity.
    #[error(
        "the store {path} is already device {device}: one store is one device's (use another --store)"
    )]
    AlreadyEnrolled { path: PathBuf, device: DeviceId },
    /// The job was taken off this device's technician: it is no longer the device's to edit
    /// (what it recorded before goes to the desk, see [`Handoff`]).
    #[error("job {0} is no longer assigned to this device's technician")]
    Unassigned(DocumentId),
    /// An attachment could not be captured (the file, the blob directory) or is not one
    /// this job holds.
    #[error("attachment: {0}")]
    Attachment(String),
}

/// Who the device is and where it keeps its data.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// The SQLite file of the local store (created if missing).
    pub store_path: PathBuf,
    /// The device's secret key file (0600). Generated on first open if missing: the private
    /// key never leaves the device; enroll its public key ([`Device::public_key`]).
    pub key_path: PathBuf,
    pub device_id: DeviceId,
    pub technician: TechnicianId,
    /// The technician's assignment index, when the app knows it (the desk API returns it as
    /// `assignment_index_url`); otherwise sync asks the server (`GET /api/me`).
    pub assignment_index: Option<DocumentId>,
    /// Largest frame accepted from the server.
    pub max_frame_bytes: usize,
}

impl DeviceConfig {
    pub fn new(
        store_path: impl Into<PathBuf>,
        key_path: impl Into<PathBuf>,
        device_id: DeviceId,
        technician: TechnicianId,
    ) -> Self {
        Self {
            store_path: store_path.into(),
            key_path: key_path.into(),
            device_id,
            technician,
            assignment_index: None,
            max_frame_bytes: 16 * 1024 * 1024,
        }
    }
}

/// An approval the technician asks for (see [`Device::request_approval`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalDraft {
    pub kind: ApprovalKind,
    /// Why: what the manager judges by.
    pub reason: String,
    /// R18: the warranty-claim part's amount; R28: the expense's (minor units).
    pub amount: Option<Money>,
    /// R28: the travel a `TravelExpense` claim is for (required there, nowhere else).
    pub expense: Option<TravelExpense>,
}

/// The identity written into the store on first open.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Identity {
    device_id: DeviceId,
    technician: TechnicianId,
    key_path: PathBuf,
    /// The automerge actor of this store's changes (hex).
    actor: String,
    /// The storage id announced to the server, so sync state resumes across reconnects.
    storage_id: String,
}

const IDENTITY: &str = "identity";
/// The app setting that keeps the device token between runs (`Device::save_token`).
const TOKEN_SETTING: &str = "device_token";

/// One job in the list of assigned jobs.
#[derive(Debug, Clone, PartialEq)]
pub struct JobEntry {
    pub id: DocumentId,
    /// The job as stored on the device; `None` until it has arrived from the server.
    pub job: Option<Job>,
    /// Where the job stands and what waits for someone; `None` with `job`.
    pub state: Option<JobState>,
    pub status: JobStatus,
}

/// How a job stands with the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStatus {
    /// Local changes the server is not known to hold yet.
    pub unsynced: bool,
    /// When the server last confirmed holding every local change.
    pub last_synced: Option<Timestamp>,
    /// The job document's heads on the device.
    pub heads: Vec<ChangeHash>,
    /// The heads the server last said it holds: every change up to them is on its disk
    /// (what `unsynced` is judged against). Empty until the server has answered once.
    pub server_heads: Vec<ChangeHash>,
    /// Set once the job was taken off this device's technician: what became of the local
    /// changes the server never received (never "synced": they went to the desk).
    pub unassigned: Option<Handoff>,
}

/// Whether the customer's acknowledgement still matches the job.
#[derive(Debug, Clone, PartialEq)]
pub enum AckStatus {
    /// No acknowledgement has been taken.
    None,
    /// The acknowledged content is unchanged since the customer signed.
    Matches(Acknowledgement),
    /// The job changed after the customer signed: the acknowledgement must be taken again.
    Stale {
        acknowledgement: Acknowledgement,
        /// The acknowledged fields that differ (`parts`, `diagnosis.fault_cause`…), or why
        /// they cannot be told.
        changed: Vec<String>,
    },
}

/// A technician's device. See the crate docs.
#[derive(Debug)]
pub struct Device {
    node: Node,
    identity: Identity,
    key: Arc<KeyPair>,
    actor: ActorId,
    store_path: PathBuf,
    max_frame_bytes: usize,
    sync: Mutex<Option<watch::Sender<bool>>>,
    /// List by loading every document, as before summaries ([`Self::reopen_baseline`]).
    list_from_documents: bool,
}

impl Device {
    /// Opens (or creates) the device's store and key. Every job in the store is kept in sync
    /// from now on whenever sync runs, including changes made before a restart.
    pub async fn open(config: DeviceConfig) -> Result<Self, ClientError> {
        tokio::task::spawn_blocking(move || Self::open_blocking(config))
            .await
            .map_err(|_| ClientError::Closed)?
    }

    /// Reopens a store that a [`DeviceConfig`] opened before, with the identity it holds.
    pub async fn reopen(store_path: impl Into<PathBuf>) -> Result<Self, ClientError> {
        Self::reopen_as(store_path.into(), false).await
    }

    /// [`Self::reopen`] as a device opened before issue 17: no summary is read at open and
    /// [`Self::jobs`] loads every document to list it (each job's `state` is left out);
    /// summaries are still written with every change. Only for the benchmark, to measure the
    /// old path beside the current one on the same store; not for apps.
    #[doc(hidden)]
    pub async fn reopen_baseline(store_path: impl Into<PathBuf>) -> Result<Self, ClientError> {
        Self::reopen_as(store_path.into(), true).await
    }

    async fn reopen_as(store_path: PathBuf, baseline: bool) -> Result<Self, ClientError> {
        tokio::task::spawn_blocking(move || -> Result<Self, ClientError> {
            let store = Store::open(&store_path, StoreConfig::default())?;
            let identity =
                read_identity(&store)?.ok_or(ClientError::NoIdentity(store_path.clone()))?;
            let config = DeviceConfig::new(
                store_path,
                identity.key_path,
                identity.device_id,
                identity.technician,
            );
            if baseline {
                // As before issue 17: the store was opened once to read the identity, then
                // again by `open`.
                drop(store);
                let store = Store::open(&config.store_path, StoreConfig::default())?;
                return Self::open_store(config, store, true);
            }
            Self::open_store(config, store, false)
        })
        .await
        .map_err(|_| ClientError::Closed)?
    }

    /// Enrolls a new device over the network (issue 15): generates the device key at
    /// `key_path` (0600; the secret never leaves the device), sends its public key with the
    /// desk's one-time `code` to the edge at `server` (its sync URL), and opens the store at
    /// `store_path` as the device the server named. The first token is kept in the store
    /// ([`Self::saved_token`]); renew it with [`Self::key_renewal`].
    pub async fn enroll_with_code(
        store_path: impl Into<PathBuf>,
        key_path: impl Into<PathBuf>,
        server: &str,
        tls: &ClientTls,
        code: &str,
    ) -> Result<(Self, Enrollment), ClientError> {
        let store_path = store_path.into();
        let key_path = key_path.into();
        let (path, keys) = (store_path.clone(), key_path.clone());
        let key = tokio::task::spawn_blocking(move || -> Result<KeyPair, ClientError> {
            let store = Store::open(&path, StoreConfig::default())?;
            if let Some(identity) = read_identity(&store)? {
                return Err(ClientError::AlreadyEnrolled {
                    path,
                    device: identity.device_id,
                });
            }
            drop(store);
            let (key, created) = KeyPair::load_or_generate(&keys)?;
            if created {
                tracing::info!(path = %keys.display(), key_id = %key.id(), "generated the device key");
            }
            Ok(key)
        })
        .await
        .map_err(|_| ClientError::Closed)??;
        let enrollment = crate::enroll::enroll(server, tls, code, key.public()).await?;
        let mut config = DeviceConfig::new(
            store_path,
            key_path,
            enrollment.device_id.clone(),
            enrollment.technician.clone(),
        );
        config.assignment_index = enrollment.assignment_index;
        let device = Self::open(config).await?;
        device.save_token(&enrollment.token).await?;
        Ok((device, enrollment))
    }

    /// Keeps `token` in the store for the next run.
    pub async fn save_token(&self, token: &DeviceToken) -> Result<(), ClientError> {
        let value = serde_json::json!({
            "token": token.token,
            "valid_until": token.valid_until.as_millis(),
            "lifetime_ms": token.lifetime_ms,
        });
        self.set_setting(TOKEN_SETTING, value.to_string()).await
    }

    /// The token kept by [`Self::save_token`], if any.
    pub async fn saved_token(&self) -> Result<Option<DeviceToken>, ClientError> {
        let Some(text) = self.setting(TOKEN_SETTING).await? else {
            return Ok(None);
        };
        let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        Ok(
            match (
                value["token"].as_str(),
                value["valid_until"].as_i64(),
                value["lifetime_ms"].as_i64(),
            ) {
                (Some(token), Some(until), Some(lifetime_ms)) => Some(DeviceToken {
                    token: token.to_owned(),
                    valid_until: Timestamp::from_millis(until),
                    lifetime_ms,
                }),
                _ => None,
            },
        )
    }

    /// A token source that renews this device's token at the edge of `server` by signing a
    /// challenge with the device key (no shell on the server, no token command).
    pub fn key_renewal(&self, server: impl Into<String>, tls: ClientTls) -> KeyRenewal {
        KeyRenewal::new(
            server,
            tls,
            self.identity.device_id.clone(),
            Arc::clone(&self.key),
        )
    }

    fn open_blocking(config: DeviceConfig) -> Result<Self, ClientError> {
        let store = Store::open(&config.store_path, StoreConfig::default())?;
        Self::open_store(config, store, false)
    }

    /// Opens the device over its opened store; `list_from_documents`: as before summaries
    /// ([`Self::reopen_baseline`]).
    fn open_store(
        config: DeviceConfig,
        store: Store,
        list_from_documents: bool,
    ) -> Result<Self, ClientError> {
        let identity = match read_identity(&store)? {
            Some(identity) => {
                if identity.device_id != config.device_id
                    || identity.technician != config.technician
                {
                    return Err(ClientError::IdentityMismatch {
                        stored: format!("{} of {}", identity.device_id, identity.technician),
                        given: format!("{} of {}", config.device_id, config.technician),
                    });
                }
                identity
            }
            None => {
                let mut random = [0u8; 16];
                getrandom::fill(&mut random).map_err(|e| KeyError::NoRandomness(e.to_string()))?;
                let identity = Identity {
                    device_id: config.device_id.clone(),
                    technician: config.technician.clone(),
                    key_path: config.key_path.clone(),
                    actor: hex::encode(random),
                    storage_id: format!("device-store-{}", hex::encode(&random[..8])),
                };
                let bytes = serde_json::to_vec(&identity).unwrap_or_default();
                store.put_meta(DEVICE, IDENTITY, bytes).wait()?;
                identity
            }
        };
        let (key, created) = KeyPair::load_or_generate(&config.key_path)?;
        if created {
            tracing::info!(path = %config.key_path.display(), key_id = %key.id(), "generated the device key");
        }
        let actor = ActorId::from(hex::decode(&identity.actor).unwrap_or_default());
        if let Some(index) = config.assignment_index {
            store
                .put_meta(DEVICE, INDEX, index.to_string().into_bytes())
                .wait()?;
        }
        let index = store
            .meta(DEVICE, INDEX)?
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse::<DocumentId>().ok());
        let docs: Vec<DocumentId> = store
            .doc_ids()?
            .iter()
            .filter_map(|d| d.parse().ok())
            .collect();
        let summaries = if list_from_documents {
            HashMap::new()
        } else {
            load_summaries(&store, &docs)?
        };
        let assigned = match index {
            None => BTreeSet::new(),
            Some(i) if list_from_documents => load(&store, i)
                .and_then(|d| read_index(&d).ok())
                .map(|idx| {
                    idx.jobs
                        .iter()
                        .filter_map(|u| DocumentId::from_url(u).ok())
                        .collect::<BTreeSet<_>>()
                })
                .unwrap_or_default(),
            Some(i) => match summaries.get(&i).map(|s| &s.content) {
                Some(Content::Index { jobs }) => jobs.iter().copied().collect(),
                _ => BTreeSet::new(),
            },
        };
        let records = node::load_sync_records(&store);
        let handoffs = node::load_handoffs(&store);

        let mut engine = EngineConfig::new(EngineRole::Client, config.device_id.to_string());
        engine.storage_id = Some(identity.storage_id.clone());
        engine.wire_limits.max_message_bytes = config.max_frame_bytes;
        engine.sync_limits = SyncLimits::for_message_bytes(config.max_frame_bytes);
        let node = Node::start(
            Arc::new(store),
            NodeConfig {
                engine,
                subscribe: docs,
                index,
                assigned,
                records,
                handoffs,
                observe_jobs: true,
                summaries: Some(summaries),
            },
            Hooks::new(),
        );
        Ok(Self {
            node,
            identity,
            key: Arc::new(key),
            actor,
            store_path: config.store_path,
            max_frame_bytes: config.max_frame_bytes,
            sync: Mutex::new(None),
            list_from_documents,
        })
    }

    pub fn device_id(&self) -> &DeviceId {
        &self.identity.device_id
    }

    pub fn technician(&self) -> &TechnicianId {
        &self.identity.technician
    }

    /// The device's public key, for enrollment at the branch.
    pub fn public_key(&self) -> &PublicKey {
        self.key.public()
    }

    pub fn store_path(&self) -> &Path {
        &self.store_path
    }

    // ---- sync --------------------------------------------------------------------------

    /// Starts background sync (replacing any running one). Returns at once; watch
    /// [`Self::sync_state`] or [`Self::events`] for progress.
    pub fn start_sync(&self, options: SyncOptions) {
        let (stop, stopped) = watch::channel(false);
        let previous = self
            .sync
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .replace(stop);
        if let Some(previous) = previous {
            previous.send_replace(true);
        }
        let generation = self.node.hooks.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let ctx = Context {
            node: self.node.clone(),
            max_frame_bytes: self.max_frame_bytes,
            generation,
            blobs: self.blobs(),
        };
        tokio::spawn(supervise(ctx, options, stopped));
    }

    /// Stops background sync; the device keeps working offline.
    pub fn stop_sync(&self) {
        let current = self
            .sync
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(stop) = current {
            stop.send_replace(true);
            // From here on the stopped supervisor's reports are ignored (see `Reporter`).
            self.node.hooks.generation.fetch_add(1, Ordering::SeqCst);
            self.node.hooks.set_state(SyncState::Offline);
        }
    }

    pub fn sync_state(&self) -> SyncState {
        self.node.hooks.state.borrow().clone()
    }

    /// Waits until the sync state satisfies `predicate`, or `timeout` passes; returns the
    /// state it found.
    pub async fn wait_for_state(
        &self,
        timeout: Duration,
        predicate: impl FnMut(&SyncState) -> bool,
    ) -> Option<SyncState> {
        let mut rx = self.node.hooks.state.subscribe();
        let found = tokio::time::timeout(timeout, rx.wait_for(predicate)).await;
        match found {
            Ok(Ok(state)) => Some(state.clone()),
            _ => None,
        }
    }

    /// A stream of what happens on the device.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.node.hooks.events.subscribe()
    }

    /// Tells the device which assignment index to follow (persisted).
    pub fn set_assignment_index(&self, index: DocumentId) {
        self.node.set_index(index);
    }

    /// The assignment index the device follows, if known.
    pub async fn assignment_index(&self) -> Option<DocumentId> {
        self.node.overview().await.index
    }

    /// A small setting the app keeps in the device's store (server URL, preferences).
    pub async fn setting(&self, key: &str) -> Result<Option<String>, ClientError> {
        self.node
            .setting(key, None)
            .await
            .map_err(|e| ClientError::Engine(LocalEditError::Storage(e)))
    }

    /// Stores an app setting durably.
    pub async fn set_setting(
        &self,
        key: &str,
        value: impl Into<String>,
    ) -> Result<(), ClientError> {
        self.node
            .setting(key, Some(value.into()))
            .await
            .map(|_| ())
            .map_err(|e| ClientError::Engine(LocalEditError::Storage(e)))
    }

    /// Stops sync, waits until every edit is committed to the store, and closes it.
    pub async fn close(self) {
        self.stop_sync();
        self.node.shutdown().await;
    }

    // ---- reading -----------------------------------------------------------------------

    /// The jobs assigned to this technician (from the assignment index), or every job on the
    /// device while the index is unknown, each with its state and how it stands with the
    /// server. Read from the summaries the device keeps (see `summary`): no document is
    /// loaded, except one the device holds no summary of.
    pub async fn jobs(&self) -> Vec<JobEntry> {
        if self.list_from_documents {
            return self.jobs_from_documents().await;
        }
        let listing = self.node.list(None).await;
        let mut out = Vec::with_capacity(listing.docs.len());
        for listed in listing.docs {
            let id = listed.id;
            let (job, state, status) = match &listed.summary {
                Some(summary) => (
                    summary.job().cloned(),
                    summary.state().cloned(),
                    status_from(summary, &listed),
                ),
                // Not stored yet (or no summary kept of it): as the document says.
                None => {
                    let read = self
                        .node
                        .read(id, move |view| {
                            let summary = view.doc.map(Summary::of);
                            let job = summary.as_ref().and_then(|s| s.job().cloned());
                            let state = summary.as_ref().and_then(|s| s.state().cloned());
                            (job, state, status_of(&view))
                        })
                        .await;
                    let Some(read) = read else {
                        continue;
                    };
                    read
                }
            };
            if !listing.index_known && job.is_none() {
                continue;
            }
            out.push(JobEntry {
                id,
                job,
                state,
                status,
            });
        }
        out
    }

    /// [`Self::jobs`] as before summaries ([`Self::reopen_baseline`]): every document read.
    async fn jobs_from_documents(&self) -> Vec<JobEntry> {
        let overview = self.node.overview().await;
        let mut ids: Vec<DocumentId> = match overview.index {
            Some(_) => overview.assigned,
            None => overview.docs,
        };
        // A job taken off the technician stays listed, with what became of its changes.
        for (job, _) in &overview.handoffs {
            if !ids.contains(job) {
                ids.push(*job);
            }
        }
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let entry = self
                .node
                .read(id, move |view| {
                    let job = view.doc.and_then(|d| read_job(d).ok());
                    let status = status_of(&view);
                    (job, status)
                })
                .await;
            let Some((job, status)) = entry else {
                continue;
            };
            if overview.index.is_none() && job.is_none() {
                continue;
            }
            out.push(JobEntry {
                id,
                job,
                state: None,
                status,
            });
        }
        out
    }

    /// The job as stored on the device.
    pub async fn job(&self, id: DocumentId) -> Result<Job, ClientError> {
        self.read_doc(id, move |d| {
            read_job(d).map_err(|source| ClientError::Schema { job: id, source })
        })
        .await
    }

    /// Whether the job has unsynced local changes and when it last synced.
    pub async fn job_status(&self, id: DocumentId) -> Result<JobStatus, ClientError> {
        if !self.list_from_documents {
            let listing = self.node.list(Some(id)).await;
            if let Some(listed) = listing.docs.first()
                && let Some(summary) = &listed.summary
            {
                if summary.heads.is_empty() {
                    return Err(ClientError::NotFound(id));
                }
                return Ok(status_from(summary, listed));
            }
        }
        self.node
            .read(id, |view| view.doc.is_some().then(|| status_of(&view)))
            .await
            .ok_or(ClientError::Closed)?
            .ok_or(ClientError::NotFound(id))
    }

    /// Fields that people set differently at the same time (shown, never hidden).
    pub async fn conflicts(&self, id: DocumentId) -> Result<Vec<FieldConflict>, ClientError> {
        self.read_doc(id, |d| Ok(conflicts(d))).await
    }

    /// Whether the customer's acknowledgement still matches the job, and why not.
    pub async fn acknowledgement_status(&self, id: DocumentId) -> Result<AckStatus, ClientError> {
        self.read_doc(id, move |d| {
            let job = read_job(d).map_err(|source| ClientError::Schema { job: id, source })?;
            ack_status(d, &job)
        })
        .await
    }

    /// The service report as the customer reads it before signing (issue 15): the job as it
    /// is on the device now, as PDF and text, in `options`' language and time zone. Once the
    /// customer has signed, the same page shows the signature and the survey; the signed
    /// report itself (with the branch's signature and QR code) is printed by the desk or head
    /// office.
    pub async fn preview(
        &self,
        id: DocumentId,
        options: PrintOptions,
    ) -> Result<Printed, ClientError> {
        let job = self.job(id).await?;
        // Rendering takes some milliseconds of CPU: off the async workers.
        tokio::task::spawn_blocking(move || fieldsync_report_print::render(&job, None, &options))
            .await
            .map_err(|_| ClientError::Closed)?
            .map_err(ClientError::from)
    }

    /// Every item the job still lacks before the server can sign its report (R7, R8, R9,
    /// R11), including an acknowledgement that no longer matches and what a merge left
    /// unresolved (issue 15).
    pub async fn missing(&self, id: DocumentId) -> Result<Vec<Missing>, ClientError> {
        let job = self.job(id).await?;
        let mut missing = missing_items(&job)?;
        missing.extend(self.unresolved(id).await?.into_iter().map(Missing::from));
        Ok(missing)
    }

    /// What a merge left unresolved (issue 15): fields that belong together written by people
    /// who had not seen each other's (`unresolved_conflict`), and part numbers possibly added
    /// twice (`possible_duplicate_part`). The server refuses to sign the report until each is
    /// resolved ([`Self::resolve`], or the desk).
    pub async fn unresolved(&self, id: DocumentId) -> Result<Vec<Unresolved>, ClientError> {
        self.read_doc(id, |d| Ok(unresolved(d))).await
    }

    /// The resolutions recorded in the job (by this device, others, or the desk).
    pub async fn resolutions(&self, id: DocumentId) -> Result<Vec<ResolutionRecord>, ClientError> {
        self.read_doc(id, |d| Ok(resolutions(d))).await
    }

    /// Resolves one group, by this technician, now: every field of the group written in one
    /// change with the record of who, when and what (see `job::doc::Resolution`). Refused
    /// with `EditError::NothingToResolve` when the group is not unresolved.
    pub async fn resolve(
        &self,
        id: DocumentId,
        resolution: Resolution,
    ) -> Result<ResolutionRecord, ClientError> {
        let by = self.identity.technician.to_string();
        let at = now();
        self.with_job(id, move |doc| Ok(doc.resolve(&resolution, &by, at)?))
            .await
    }

    async fn read_doc<T: Send + 'static>(
        &self,
        id: DocumentId,
        f: impl FnOnce(&Automerge) -> Result<T, ClientError> + Send + 'static,
    ) -> Result<T, ClientError> {
        self.node
            .read(id, move |view| match view.doc {
                Some(d) => f(d),
                None => Err(ClientError::NotFound(id)),
            })
            .await
            .ok_or(ClientError::Closed)?
    }

    // ---- editing -----------------------------------------------------------------------

    /// Applies one typed edit; returns once it is durable in the local store.
    pub async fn edit(&self, id: DocumentId, edit: JobEdit) -> Result<(), ClientError> {
        self.edit_all(id, vec![edit]).await
    }

    /// Applies several typed edits together: all are stored, or none.
    pub async fn edit_all(&self, id: DocumentId, edits: Vec<JobEdit>) -> Result<(), ClientError> {
        self.with_job(id, move |doc| {
            for edit in &edits {
                edit.apply(doc)?;
            }
            Ok(())
        })
        .await
    }

    /// R7: adds a part line; returns its id.
    pub async fn add_part(
        &self,
        id: DocumentId,
        draft: PartDraft,
    ) -> Result<PartLineId, ClientError> {
        let line = PartLineId::random();
        self.edit(
            id,
            JobEdit::AddPart {
                id: line.clone(),
                draft,
            },
        )
        .await?;
        Ok(line)
    }

    /// R32: records the site safety briefing, by this technician, now.
    pub async fn record_safety_briefing(
        &self,
        id: DocumentId,
        notes: impl Into<String>,
    ) -> Result<(), ClientError> {
        let briefing = SafetyBriefing {
            at: now(),
            by: self.identity.technician.clone(),
            notes: notes.into(),
        };
        self.edit(id, JobEdit::SafetyBriefing(briefing)).await
    }

    /// R16: records the training given to the customer's staff, by this technician, now:
    /// who was trained (names or roles; at least one is needed to complete an installation
    /// job) and what it covered. The customer acknowledges it with the rest of the job, so
    /// record it before taking the acknowledgement.
    pub async fn record_training(
        &self,
        id: DocumentId,
        trainees: Vec<String>,
        topics: impl Into<String>,
    ) -> Result<(), ClientError> {
        let training = Training {
            at: now(),
            by: self.identity.technician.clone(),
            trainees,
            topics: topics.into(),
        };
        self.edit(id, JobEdit::Training(training)).await
    }

    /// R11: checks out with the desk, by this technician, now.
    pub async fn check_out(
        &self,
        id: DocumentId,
        note: impl Into<String>,
    ) -> Result<(), ClientError> {
        let check_out = CheckOut {
            at: now(),
            by: self.identity.technician.clone(),
            note: note.into(),
        };
        self.edit(id, JobEdit::CheckOut(check_out)).await
    }

    /// R8, R9: records the customer's acknowledgement, signed by this device over the job's
    /// canonical content and heads as they are at this moment (in the same step as it is
    /// written, so no concurrent edit can slip in between).
    ///
    /// Refused with [`ClientError::NotReadyToSign`], listing every item, while the job lacks
    /// anything the completion request would be refused for (R7 for a repair, R16 for an
    /// installation, R11's check-out) or the draft is not well formed (a signer's name, a
    /// mark, survey scores 1 to 5 or not answered: R8, R9), or while a merge left anything
    /// unresolved ([`Self::unresolved`], issue 15): the customer signs once. Nothing is
    /// written then.
    pub async fn acknowledge(
        &self,
        id: DocumentId,
        draft: AckDraft,
    ) -> Result<Acknowledgement, ClientError> {
        let key = Arc::clone(&self.key);
        let device_id = self.identity.device_id.clone();
        self.with_job(id, move |doc| {
            let job = doc.read().map_err(EditError::from)?;
            let heads: Vec<String> = doc.heads().iter().map(ChangeHash::to_string).collect();
            let ack = sign_acknowledgement(&job, heads, draft, device_id, &key)
                .map_err(JobFailure::Report)?;
            let mut blockers = acknowledgement_blockers(&job, &ack);
            // Issue 15: the customer does not sign over fields that disagree.
            blockers.extend(doc.unresolved().into_iter().map(Missing::from));
            if !blockers.is_empty() {
                return Err(JobFailure::NotReadyToSign(blockers));
            }
            doc.set_acknowledgement(&ack)?;
            Ok(ack)
        })
        .await
    }

    /// Marks the job complete: asks the edge server to sign its report. Refused here, with
    /// every missing item, when the server would refuse it (R7, R8, R9, R11, R16's training
    /// on an installation job, an acknowledgement the job no longer matches, or anything a
    /// merge left unresolved, issue 15).
    pub async fn request_completion(&self, id: DocumentId) -> Result<(), ClientError> {
        let completion = Completion {
            at: now(),
            by: self.identity.technician.clone(),
        };
        self.with_job(id, move |doc| {
            let job = doc.read().map_err(EditError::from)?;
            let missing = missing_items(&job).map_err(|e| match e {
                ClientError::Report(r) => JobFailure::Report(r),
                other => JobFailure::Other(other.to_string()),
            })?;
            let mut missing = missing;
            missing.extend(doc.unresolved().into_iter().map(Missing::from));
            if !missing.is_empty() {
                return Err(JobFailure::Incomplete(missing));
            }
            doc.request_completion(&completion)?;
            Ok(())
        })
        .await
    }

    // ---- attachments (issue 15) ----------------------------------------------------------

    /// The device's blob directory (beside the store file).
    pub fn blobs(&self) -> LocalBlobs {
        LocalBlobs::for_store(&self.store_path)
    }

    /// Attaches a photo, receipt or signature image to the job, offline too: the bytes are
    /// stored durably in the device's blob directory under their SHA-256, marked for upload,
    /// and the job references them (one durable edit). Uploaded on the next sync; the edge
    /// signs no report while a referenced blob has not reached it. The same bytes attached
    /// twice are one attachment. `at` is the capture time (the device's clock).
    pub async fn attach(
        &self,
        id: DocumentId,
        bytes: Vec<u8>,
        kind: AttachmentKind,
        media_type: &str,
        name: &str,
        at: Timestamp,
    ) -> Result<AttachmentRef, ClientError> {
        if media_type.trim().is_empty() || name.trim().is_empty() {
            return Err(ClientError::Attachment(
                "an attachment needs a media type and a name".into(),
            ));
        }
        // The job must be on the device before its bytes are kept for it.
        self.job(id).await?;
        let size = bytes.len() as u64;
        let blobs = self.blobs();
        let digest = tokio::task::spawn_blocking(move || blobs.capture(id, &bytes))
            .await
            .map_err(|_| ClientError::Closed)??;
        let reference = AttachmentRef {
            digest,
            kind,
            media_type: media_type.trim().to_owned(),
            size,
            name: name.trim().to_owned(),
            at,
            by: self.identity.technician.clone(),
        };
        let written = reference.clone();
        self.with_job(id, move |doc| {
            add_attachment(doc.inner_mut(), &written)
                .map(|_| ())
                .map_err(|e| JobFailure::Other(e.to_string()))
        })
        .await?;
        self.node.hooks.attachments.notify_one();
        Ok(reference)
    }

    /// [`Self::attach`] of a file: its name is the attachment's name, its extension gives
    /// the media type (`.jpg`/`.jpeg`, `.png`, `.heic`, `.webp`, `.pdf`, else
    /// `application/octet-stream`).
    pub async fn attach_file(
        &self,
        id: DocumentId,
        path: &Path,
        kind: AttachmentKind,
        at: Timestamp,
    ) -> Result<AttachmentRef, ClientError> {
        let owned = path.to_owned();
        let bytes = tokio::task::spawn_blocking(move || std::fs::read(owned))
            .await
            .map_err(|_| ClientError::Closed)?
            .map_err(|e| ClientError::Attachment(format!("cannot read {}: {e}", path.display())))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "attachment".into());
        self.attach(id, bytes, kind, media_type_of(path), &name, at)
            .await
    }

    /// The attachments captured on this device that the edge has not confirmed yet.
    pub async fn pending_attachments(&self) -> Vec<(DocumentId, String)> {
        let blobs = self.blobs();
        tokio::task::spawn_blocking(move || blobs.pending())
            .await
            .unwrap_or_default()
    }

    /// Uploads every pending attachment now (background sync does it too while connected),
    /// resuming any upload the edge holds part of. `server` is the sync URL.
    pub async fn upload_attachments(
        &self,
        server: &str,
        token: &str,
        tls: &ClientTls,
    ) -> Vec<UploadOutcome> {
        let outcomes = upload_pending(&self.blobs(), server, tls, token).await;
        for outcome in &outcomes {
            emit_upload(&self.node.hooks, outcome);
        }
        outcomes
    }

    /// R12, R18, R31: asks the desk for an approval on the job (offline too: the request is
    /// written into the job document and syncs with it). `amount` is the R18 warranty-claim
    /// part's amount (required there; the desk routes amounts above its
    /// `director_approval_above` to the after-sales director). Returns the request as written;
    /// the decision comes back as [`Event::ApprovalDecided`] and in [`Self::approvals`].
    pub async fn request_approval(
        &self,
        id: DocumentId,
        draft: ApprovalDraft,
    ) -> Result<Approval, ClientError> {
        let reason = draft.reason.trim().to_owned();
        if reason.is_empty() {
            return Err(ClientError::InvalidApproval(format!(
                "{} ({}) needs a reason the manager can judge",
                draft.kind.as_str(),
                draft.kind.rule()
            )));
        }
        match (draft.kind, &draft.expense) {
            (ApprovalKind::TravelExpense, None) => {
                return Err(ClientError::InvalidApproval(
                    "a travel expense (R28) needs its date, from, to and category".into(),
                ));
            }
            (ApprovalKind::TravelExpense, Some(e)) => {
                for (name, value) in [("from", &e.from), ("to", &e.to), ("category", &e.category)] {
                    if value.trim().is_empty() {
                        return Err(ClientError::InvalidApproval(format!(
                            "a travel expense (R28) needs its {name}"
                        )));
                    }
                }
            }
            (_, Some(_)) => {
                return Err(ClientError::InvalidApproval(format!(
                    "only a travel expense (R28) names travel, not {}",
                    draft.kind.as_str()
                )));
            }
            (_, None) => {}
        }
        match (draft.kind, draft.amount) {
            (ApprovalKind::WarrantyPart | ApprovalKind::TravelExpense, None) => {
                return Err(ClientError::InvalidApproval(format!(
                    "{} ({}) needs its amount",
                    draft.kind.as_str(),
                    draft.kind.rule()
                )));
            }
            (_, Some(amount)) if amount.0 <= 0 => {
                return Err(ClientError::InvalidApproval(format!(
                    "the amount must be more than zero, not {}",
                    amount.0
                )));
            }
            _ => {}
        }
        if let Some(receipt) = draft.expense.as_ref().and_then(|e| e.receipt.as_deref()) {
            let job = self.job(id).await?;
            let found = job
                .attachments
                .iter()
                .any(|a| a.digest == receipt && a.kind == AttachmentKind::Receipt);
            if !found {
                return Err(ClientError::InvalidApproval(format!(
                    "the receipt {receipt} is not a receipt attached to this job \
                     (`Device::attach` with AttachmentKind::Receipt first)"
                )));
            }
        }
        let mut random = [0u8; 6];
        getrandom::fill(&mut random).map_err(|e| KeyError::NoRandomness(e.to_string()))?;
        let approval = Approval {
            id: format!("apr-{}", hex::encode(random)),
            kind: draft.kind,
            reason,
            requested_by: self.identity.technician.to_string(),
            requested_at: now(),
            amount: draft.amount,
            expense: draft.expense,
            decision: None,
        };
        let written = approval.clone();
        self.with_job(id, move |doc| {
            request_approval(doc.inner_mut(), &written)
                .map_err(|e| JobFailure::Other(e.to_string()))
        })
        .await?;
        Ok(approval)
    }

    /// The job's approval requests (R12, R18, R31) with the desk's decisions, oldest first.
    pub async fn approvals(&self, id: DocumentId) -> Result<Vec<Approval>, ClientError> {
        self.read_doc(id, |d| {
            read_approvals(d)
                .map_err(|e| ClientError::Engine(LocalEditError::Failed(e.to_string())))
        })
        .await
    }

    /// Runs a typed edit on the job inside the engine, so it applies to the latest content
    /// and is durable when this returns.
    async fn with_job<T: Send + 'static>(
        &self,
        id: DocumentId,
        f: impl FnOnce(&mut JobDoc) -> Result<T, JobFailure> + Send + 'static,
    ) -> Result<T, ClientError> {
        let taken_off = self
            .node
            .overview()
            .await
            .handoffs
            .iter()
            .any(|(job, _)| *job == id);
        if taken_off {
            return Err(ClientError::Unassigned(id));
        }
        let slot: Arc<Mutex<Option<Result<T, ClientError>>>> = Arc::new(Mutex::new(None));
        let out = Arc::clone(&slot);
        let actor = self.actor.clone();
        // Every change names this device's technician and the device's time, so the desk
        // can say who wrote a value that ends up in disagreement (`job::doc::competing`).
        let by = self.identity.technician.to_string();
        let edit = LocalEdit::Change(Box::new(move |doc: &mut Automerge| {
            let result: Result<T, ClientError> = if doc.get_heads().is_empty() {
                Err(ClientError::NotFound(id))
            } else {
                edit_automerge(doc, &actor, |ac| {
                    let mut job = JobDoc::from_autocommit(std::mem::take(ac));
                    job.stamp(&by, now());
                    let r = f(&mut job);
                    *ac = job.into_inner();
                    r
                })
                .map_err(|e| match e {
                    EditFailure::Edit(f) => f.into_client(),
                    EditFailure::Automerge(s) => ClientError::Engine(LocalEditError::Failed(s)),
                })
            };
            let failed = result.as_ref().err().map(ToString::to_string);
            *out.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(result);
            match failed {
                Some(reason) => Err(reason),
                None => Ok(()),
            }
        }));
        let stored = self.node.edit(id, edit).await;
        let value = slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        match (stored, value) {
            (Ok(_), Some(Ok(v))) => Ok(v),
            (_, Some(Err(e))) => Err(e),
            (Err(e), _) => Err(ClientError::Engine(e)),
            (Ok(_), None) => Err(ClientError::Closed),
        }
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.stop_sync();
    }
}

/// Why a typed edit inside the engine failed.
#[derive(Debug)]
enum JobFailure {
    Edit(EditError),
    Report(ReportError),
    Incomplete(Vec<Missing>),
    NotReadyToSign(Vec<Missing>),
    Other(String),
}

impl From<EditError> for JobFailure {
    fn from(e: EditError) -> Self {
        JobFailure::Edit(e)
    }
}

impl JobFailure {
    fn into_client(self) -> ClientError {
        match self {
            JobFailure::Edit(e) => ClientError::Edit(e),
            JobFailure::Report(e) => ClientError::Report(e),
            JobFailure::Incomplete(m) => ClientError::Incomplete(m),
            JobFailure::NotReadyToSign(m) => ClientError::NotReadyToSign(m),
            JobFailure::Other(s) => ClientError::Engine(LocalEditError::Failed(s)),
        }
    }
}

fn read_identity(store: &Store) -> Result<Option<Identity>, ClientError> {
    Ok(store
        .meta(DEVICE, IDENTITY)?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

fn load(store: &Store, doc: DocumentId) -> Option<Automerge> {
    let chunks = store.load_doc(&doc.to_string()).ok()??;
    fieldsync_shared::stored::load(&chunks).ok()
}

/// The summary of every document in `docs`: as stored, or, for one the store holds no
/// summary of (a store from before them, a chunk stored without one), made from the document
/// and stored, once.
fn load_summaries(
    store: &Store,
    docs: &[DocumentId],
) -> Result<HashMap<DocumentId, Arc<Summary>>, ClientError> {
    let mut stored: HashMap<String, Vec<u8>> = store.doc_summaries()?.into_iter().collect();
    let mut out = HashMap::with_capacity(docs.len());
    let mut made = 0usize;
    for doc in docs {
        let key = doc.to_string();
        let summary = match stored.remove(&key).and_then(|b| Summary::decode(&b)) {
            Some(summary) => summary,
            None => {
                // A document that does not load has no summary: the list reads it (and finds
                // nothing), as it did before summaries.
                let Some(loaded) = load(store, *doc) else {
                    continue;
                };
                let summary = Summary::of(&loaded);
                // Not awaited: the node's writes queue behind it, and one lost is made again.
                drop(store.put_doc_summary(&key, summary.encode()));
                made += 1;
                summary
            }
        };
        out.insert(*doc, Arc::new(summary));
    }
    if made > 0 {
        tracing::info!(
            documents = made,
            "made the job list's summaries of documents stored without one"
        );
    }
    Ok(out)
}

/// A job's status from its summary: what [`status_of`] says of the document.
fn status_from(summary: &Summary, listed: &Listed) -> JobStatus {
    let record = listed.record.as_ref();
    JobStatus {
        unsynced: summary.unsynced(record.map(|r| r.heads.as_slice())),
        last_synced: record.and_then(|r| r.synced_at),
        heads: summary.heads.clone(),
        server_heads: record.map(|r| r.heads.clone()).unwrap_or_default(),
        unassigned: listed.handoff.clone(),
    }
}

fn status_of(view: &DocView<'_>) -> JobStatus {
    let (doc, record) = (view.doc, view.record);
    let heads = doc.map(Automerge::get_heads).unwrap_or_default();
    let unsynced = match (doc, record) {
        (Some(d), Some(r)) => r.unsynced(d),
        (Some(d), None) => !d.get_heads().is_empty(),
        (None, _) => false,
    };
    JobStatus {
        unsynced,
        last_synced: record.and_then(|r| r.synced_at),
        heads,
        server_heads: record.map(|r| r.heads.clone()).unwrap_or_default(),
        unassigned: view.handoff.cloned(),
    }
}

fn missing_items(job: &Job) -> Result<Vec<Missing>, ClientError> {
    let mut missing = completeness(job);
    if let AckMatch::ContentChanged { .. } = acknowledgement_matches(job)? {
        missing.push(Missing {
            rule: "R8",
            code: "stale_acknowledgement",
            message: "the job changed after the customer signed: take the acknowledgement again"
                .into(),
        });
    }
    Ok(missing)
}

fn ack_status(doc: &Automerge, job: &Job) -> Result<AckStatus, ClientError> {
    let Some(ack) = job.acknowledgement.clone() else {
        return Ok(AckStatus::None);
    };
    match acknowledgement_matches(job)? {
        AckMatch::Matches => Ok(AckStatus::Matches(ack)),
        AckMatch::NoAcknowledgement => Ok(AckStatus::None),
        AckMatch::ContentChanged { .. } => {
            let heads: Option<Vec<ChangeHash>> = ack.heads.iter().map(|h| h.parse().ok()).collect();
            let then = heads.and_then(|h: Vec<ChangeHash>| read_job_at(doc, &h).ok());
            let changed = match then {
                Some(then) => {
                    let mut paths = Vec::new();
                    diff(
                        "",
                        &acknowledged_content(&then)?,
                        &acknowledged_content(job)?,
                        &mut paths,
                    );
                    paths
                }
                None => vec!["(the signed content is not in this document's history)".into()],
            };
            Ok(AckStatus::Stale {
                acknowledgement: ack,
                changed,
            })
        }
    }
}

/// The paths at which two JSON values differ: objects are compared key by key, anything else
/// (lists included) as a whole.
fn diff(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for key in keys {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                let null = Value::Null;
                diff(
                    &child,
                    x.get(key).unwrap_or(&null),
                    y.get(key).unwrap_or(&null),
                    out,
                );
            }
        }
        _ if a != b => out.push(path.to_owned()),
        _ => {}
    }
}

/// The media type a file name's extension suggests.
fn media_type_of(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "heic" => "image/heic",
        "webp" => "image/webp",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::diff;

    #[test]
    fn diff_names_the_fields_that_changed() {
        let a = json!({"parts": [1], "diagnosis": {"fault_cause": "x", "solution": "y"}});
        let b = json!({"parts": [1, 2], "diagnosis": {"fault_cause": "z", "solution": "y"}});
        let mut out = Vec::new();
        diff("", &a, &b, &mut out);
        assert_eq!(out, vec!["diagnosis.fault_cause", "parts"]);
    }
}

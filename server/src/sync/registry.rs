//! The server's own records: enrolled devices, jobs, who is assigned to what, and each
//! technician's assignment index document.
//!
//! Access decisions come from here and never from a document a device can write (DESIGN.md,
//! "Documents"). The records live in the store's `meta` table and are mirrored in memory so
//! the sync engine's access checks are a hash lookup. Commands run from the CLI (`device
//! enroll`, `device revoke`) write the same table from another process and store a fresh
//! random generation stamp; a running server polls the stamp and merges the devices it finds
//! (never replacing its own records wholesale, which would lose changes it made meanwhile),
//! so a revocation reaches live connections. Jobs and assignments are written by the server
//! process only.

use std::collections::{BTreeSet, HashMap};

use fieldsync_shared::authority::{self, DocKind, Writer};
use fieldsync_shared::ids::{BranchId, DeviceId, DocumentId, TechnicianId};
use fieldsync_shared::keys::PublicKey;
use fieldsync_shared::report::DeviceRecord;
use fieldsync_shared::sync::{Access, AccessPolicy, Principal, WriteScope};
use fieldsync_shared::time::Timestamp;
use fieldsync_storage::{StorageError, Store};
use serde::{Deserialize, Serialize};

const DEVICES: &str = "devices";
const JOBS: &str = "jobs";
const INDEXES: &str = "assignment_indexes";
const REGISTRY: &str = "registry";
const BRANCHES: &str = "branches";
const OWNERS: &str = "document_owners";
const GENERATION: &str = "generation";

/// A job as the server records it: which branch, and who is assigned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub job_id: DocumentId,
    pub branch_id: BranchId,
    pub technicians: BTreeSet<TechnicianId>,
    pub created_at: Timestamp,
    /// Technicians once assigned and since unassigned: their devices may hand over what they
    /// recorded offline (`handoff`).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub former: BTreeSet<TechnicianId>,
}

/// A branch enrolled at head office: the public key its reports are signed with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchRecord {
    pub branch_id: BranchId,
    /// Hex ed25519 public key.
    pub public_key: String,
    pub enrolled_at: Timestamp,
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("record {namespace}/{key} is unreadable: {reason}")]
    Corrupt {
        namespace: &'static str,
        key: String,
        reason: String,
    },
    #[error("device {0} is not enrolled")]
    UnknownDevice(DeviceId),
    #[error("device {0} is already enrolled")]
    DeviceExists(DeviceId),
}

/// Which tier the records serve: access rules differ.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Tier {
    #[default]
    Edge,
    HeadOffice,
}

/// The in-memory mirror of the records.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    devices: HashMap<DeviceId, DeviceRecord>,
    jobs: HashMap<DocumentId, JobRecord>,
    /// Technician → their assignment index document.
    indexes: HashMap<TechnicianId, DocumentId>,
    /// Assignment index document → its technician.
    index_owner: HashMap<DocumentId, TechnicianId>,
    /// Technician → assigned jobs.
    assigned: HashMap<TechnicianId, BTreeSet<DocumentId>>,
    tier: Tier,
    /// Head office: enrolled branches.
    branches: HashMap<BranchId, BranchRecord>,
    /// Head office: the branch each received document came from. Only that branch may sync
    /// it again; no other branch learns it exists.
    owners: HashMap<DocumentId, BranchId>,
}

fn decode<T: for<'de> Deserialize<'de>>(
    namespace: &'static str,
    key: &str,
    bytes: &[u8],
) -> Result<T, RegistryError> {
    serde_json::from_slice(bytes).map_err(|e| RegistryError::Corrupt {
        namespace,
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // These records are plain structs of strings and numbers: serialising cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

impl Registry {
    /// Reads every record from the store.
    pub fn load(store: &Store) -> Result<Self, RegistryError> {
        let mut registry = Self::load_devices(store)?;
        for (key, value) in store.meta_entries(INDEXES)? {
            let technician =
                TechnicianId::new(key.clone()).map_err(|e| RegistryError::Corrupt {
                    namespace: INDEXES,
                    key: key.clone(),
                    reason: e.to_string(),
                })?;
            let doc: DocumentId = decode(INDEXES, &key, &value)?;
            registry.index_owner.insert(doc, technician.clone());
            registry.indexes.insert(technician, doc);
        }
        for (key, value) in store.meta_entries(JOBS)? {
            let record: JobRecord = decode(JOBS, &key, &value)?;
            registry.index_job(&record);
            registry.jobs.insert(record.job_id, record);
        }
        for (key, value) in store.meta_entries(OWNERS)? {
            let doc: DocumentId = key.parse().map_err(|_| RegistryError::Corrupt {
                namespace: OWNERS,
                key: key.clone(),
                reason: "not a document id".into(),
            })?;
            let branch: BranchId = decode(OWNERS, &key, &value)?;
            registry.owners.insert(doc, branch);
        }
        Ok(registry)
    }

    /// Sets which tier these records serve (head office grants branches their documents).
    pub fn with_tier(mut self, tier: Tier) -> Self {
        self.tier = tier;
        self
    }

    /// The generation stamp the store holds: a fresh random value after every change to the
    /// devices, so a poller notices a change by any process without a shared counter.
    pub fn stored_generation(store: &Store) -> Result<u64, RegistryError> {
        Ok(store
            .meta(REGISTRY, GENERATION)?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0))
    }

    /// Writes a fresh generation stamp after the records just written: the stamp commits no
    /// earlier than they do, so a process that sees it reads them. Callers hand back this
    /// write's outcome joined to theirs, so "stored" means the change is also announced.
    fn bump(&mut self, store: &Store) -> fieldsync_storage::Pending<()> {
        let mut stamp = [0u8; 8];
        // Without randomness, a time-free counter of our own still changes the stamp.
        if getrandom::fill(&mut stamp).is_err() {
            stamp = (self.devices.len() as u64 ^ self.jobs.len() as u64 ^ 0x5eed).to_be_bytes();
        }
        store.put_meta(REGISTRY, GENERATION, stamp.to_vec())
    }

    /// Reads only the device and branch records (what another process may change).
    pub fn load_devices(store: &Store) -> Result<Self, RegistryError> {
        let mut registry = Registry::default();
        for (key, value) in store.meta_entries(DEVICES)? {
            let record: DeviceRecord = decode(DEVICES, &key, &value)?;
            registry.devices.insert(record.device_id.clone(), record);
        }
        for (key, value) in store.meta_entries(BRANCHES)? {
            let record: BranchRecord = decode(BRANCHES, &key, &value)?;
            registry.branches.insert(record.branch_id.clone(), record);
        }
        Ok(registry)
    }

    /// Merges the devices of `fresh` (read from the store) into these records: new devices
    /// are added and revocations are kept from either side. Returns the devices this merge
    /// revoked.
    pub fn merge_devices(&mut self, fresh: &Registry) -> Vec<DeviceRecord> {
        for (id, record) in &fresh.branches {
            self.branches.insert(id.clone(), record.clone());
        }
        let mut revoked = Vec::new();
        for (id, theirs) in &fresh.devices {
            match self.devices.get_mut(id) {
                None => {
                    self.devices.insert(id.clone(), theirs.clone());
                }
                Some(ours) => {
                    if ours.revoked_at.is_none() && theirs.revoked_at.is_some() {
                        ours.revoked_at = theirs.revoked_at;
                        revoked.push(ours.clone());
                    }
                }
            }
        }
        revoked
    }

    fn index_job(&mut self, record: &JobRecord) {
        for tech in &record.technicians {
            self.assigned
                .entry(tech.clone())
                .or_default()
                .insert(record.job_id);
        }
    }

    pub fn device(&self, id: &DeviceId) -> Option<&DeviceRecord> {
        self.devices.get(id)
    }

    pub fn devices(&self) -> impl Iterator<Item = &DeviceRecord> {
        self.devices.values()
    }

    pub fn job(&self, id: &DocumentId) -> Option<&JobRecord> {
        self.jobs.get(id)
    }

    pub fn jobs(&self) -> impl Iterator<Item = &JobRecord> {
        self.jobs.values()
    }

    pub fn index_doc(&self, technician: &TechnicianId) -> Option<DocumentId> {
        self.indexes.get(technician).copied()
    }

    /// Jobs assigned to a technician.
    pub fn assigned(&self, technician: &TechnicianId) -> impl Iterator<Item = &DocumentId> {
        self.assigned.get(technician).into_iter().flatten()
    }

    /// Enrolls a device. Durable when the returned write completes.
    pub fn enroll_device(
        &mut self,
        store: &Store,
        record: DeviceRecord,
    ) -> Result<fieldsync_storage::Pending<()>, RegistryError> {
        if self.devices.contains_key(&record.device_id) {
            return Err(RegistryError::DeviceExists(record.device_id));
        }
        let pending = store.put_meta(DEVICES, record.device_id.as_str(), encode(&record));
        self.devices.insert(record.device_id.clone(), record);
        Ok(pending.with_later(self.bump(store)))
    }

    /// Revokes a device from `at` on.
    pub fn revoke_device(
        &mut self,
        store: &Store,
        id: &DeviceId,
        at: Timestamp,
    ) -> Result<fieldsync_storage::Pending<()>, RegistryError> {
        let record = self
            .devices
            .get_mut(id)
            .ok_or_else(|| RegistryError::UnknownDevice(id.clone()))?;
        record.revoked_at.get_or_insert(at);
        let pending = store.put_meta(DEVICES, id.as_str(), encode(&*record));
        Ok(pending.with_later(self.bump(store)))
    }

    /// Head office: enrolls (or re-keys) a branch. Durable when the returned write completes.
    pub fn enroll_branch(
        &mut self,
        store: &Store,
        record: BranchRecord,
    ) -> fieldsync_storage::Pending<()> {
        let pending = store.put_meta(BRANCHES, record.branch_id.as_str(), encode(&record));
        self.branches.insert(record.branch_id.clone(), record);
        pending.with_later(self.bump(store))
    }

    pub fn branch(&self, id: &BranchId) -> Option<&BranchRecord> {
        self.branches.get(id)
    }

    /// Head office: the enrolled public key of `id` (none for an unknown branch or a record
    /// whose key does not parse).
    pub fn branch_key(&self, id: &BranchId) -> Option<PublicKey> {
        self.branches
            .get(id)
            .and_then(|r| PublicKey::from_hex(&r.public_key).ok())
    }

    pub fn branches(&self) -> impl Iterator<Item = &BranchRecord> {
        self.branches.values()
    }

    /// Head office: records that `doc` came from `branch` (the first to send it).
    pub fn adopt(&mut self, store: &Store, doc: DocumentId, branch: BranchId) {
        if self.owners.contains_key(&doc) {
            return;
        }
        // Not awaited: the hub thread must not block. A crash before it is written loses
        // only the record; the document's content names its branch, and until it is
        // written again the id is unknown, so only a branch that knows it can claim it.
        drop(store.put_meta(OWNERS, &doc.to_string(), encode(&branch)));
        self.owners.insert(doc, branch);
    }

    pub fn owner(&self, doc: &DocumentId) -> Option<&BranchId> {
        self.owners.get(doc)
    }

    /// Records a technician's assignment index document.
    pub fn set_index_doc(
        &mut self,
        store: &Store,
        technician: &TechnicianId,
        doc: DocumentId,
    ) -> fieldsync_storage::Pending<()> {
        self.indexes.insert(technician.clone(), doc);
        self.index_owner.insert(doc, technician.clone());
        store.put_meta(INDEXES, technician.as_str(), encode(&doc))
    }

    /// Records (or replaces) a job and its assigned technicians.
    pub fn put_job(&mut self, store: &Store, record: JobRecord) -> fieldsync_storage::Pending<()> {
        if let Some(old) = self.jobs.get(&record.job_id) {
            for tech in &old.technicians {
                if let Some(set) = self.assigned.get_mut(tech) {
                    set.remove(&old.job_id);
                }
            }
        }
        self.index_job(&record);
        let pending = store.put_meta(JOBS, &record.job_id.to_string(), encode(&record));
        self.jobs.insert(record.job_id, record);
        pending
    }
}

impl AccessPolicy for Registry {
    fn access(&self, who: &Principal, doc: &DocumentId) -> Access {
        match who {
            Principal::Device {
                device_id,
                technician,
            } => {
                let live = self
                    .devices
                    .get(device_id)
                    .is_some_and(|d| d.revoked_at.is_none() && &d.technician == technician);
                if !live {
                    Access::None
                } else if self.indexes.get(technician) == Some(doc) {
                    // Only the server writes the index.
                    Access::Read
                } else if self
                    .assigned
                    .get(technician)
                    .is_some_and(|s| s.contains(doc))
                {
                    Access::ReadWrite
                } else {
                    Access::None
                }
            }
            // The desk sees the whole branch, but only documents that exist in it. It writes
            // through the HTTP API, where its role is checked: over `/sync` it only reads
            // (and its changes are refused with the path named, `authority`).
            Principal::Desk { .. } => {
                if self.jobs.contains_key(doc) || self.index_owner.contains_key(doc) {
                    Access::Read
                } else {
                    Access::None
                }
            }
            // Head office: a branch reaches the documents it sent, and may send new ones.
            Principal::Branch { branch_id } => {
                let enrolled = self.branches.contains_key(branch_id);
                match (self.tier, enrolled, self.owners.get(doc)) {
                    (Tier::HeadOffice, true, None) => Access::ReadWrite,
                    (Tier::HeadOffice, true, Some(owner)) if owner == branch_id => {
                        Access::ReadWrite
                    }
                    _ => Access::None,
                }
            }
            // The head office this branch dialled: it receives what the branch offers and
            // changes nothing here.
            Principal::Server => match self.tier {
                Tier::Edge => Access::Read,
                Tier::HeadOffice => Access::None,
            },
        }
    }

    /// Devices and desk tokens write only what the table of the document's kind grants
    /// them (a device: its on-site record in the jobs assigned to it). A branch writes the
    /// documents it owns at head office whole: head office checks those by signature.
    fn write_scope(&self, who: &Principal, doc: &DocumentId) -> WriteScope {
        if cfg!(feature = "unchecked-writes") {
            return WriteScope::Any;
        }
        let writer = match who {
            Principal::Device { .. } => Writer::Device,
            Principal::Desk { .. } => Writer::Desk,
            Principal::Branch { .. } | Principal::Server => return WriteScope::Any,
        };
        let kind = if self.jobs.contains_key(doc) {
            DocKind::Job
        } else if self.index_owner.contains_key(doc) {
            DocKind::AssignmentIndex
        } else {
            DocKind::Unknown
        };
        WriteScope::Table(authority::table(kind), writer)
    }
}

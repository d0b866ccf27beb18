//! The server's own records: enrolled devices, jobs, who is assigned to what, and each
//! technician's assignment index document.
//!
//! Access decisions come from here and never from a document a device can write (DESIGN.md,
//! "Documents"). The records live in the store's `meta` table and are mirrored in memory so
//! the sync engine's access checks are a hash lookup. Commands run from the CLI (`device
//! enroll`, `device revoke`) write the same table from another process and, with each change,
//! a fresh random change mark; a running server polls the mark and reloads when it moves, so a
//! revocation reaches live connections.

use std::collections::{BTreeSet, HashMap};

use fieldsync_shared::ids::{BranchId, DeviceId, DocumentId, TechnicianId};
use fieldsync_shared::report::DeviceRecord;
use fieldsync_shared::sync::{Access, AccessPolicy, Principal};
use fieldsync_shared::time::Timestamp;
use fieldsync_storage::{StorageError, Store};
use serde::{Deserialize, Serialize};

const DEVICES: &str = "devices";
const JOBS: &str = "jobs";
const INDEXES: &str = "assignment_indexes";
const REGISTRY: &str = "registry";
/// Written only by processes other than the server (see [`Registry::load_for_tool`]).
const CHANGE_MARK: &str = "change_mark";

/// A job as the server records it: which branch, and who is assigned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub job_id: DocumentId,
    pub branch_id: BranchId,
    pub technicians: BTreeSet<TechnicianId>,
    pub created_at: Timestamp,
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

/// The in-memory mirror of the records.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    /// Loaded by another process than the server: every change also moves the change mark.
    tool: bool,
    devices: HashMap<DeviceId, DeviceRecord>,
    jobs: HashMap<DocumentId, JobRecord>,
    /// Technician → their assignment index document.
    indexes: HashMap<TechnicianId, DocumentId>,
    /// Assignment index document → its technician.
    index_owner: HashMap<DocumentId, TechnicianId>,
    /// Technician → assigned jobs.
    assigned: HashMap<TechnicianId, BTreeSet<DocumentId>>,
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
        let mut registry = Registry::default();
        for (key, value) in store.meta_entries(DEVICES)? {
            let record: DeviceRecord = decode(DEVICES, &key, &value)?;
            registry.devices.insert(record.device_id.clone(), record);
        }
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
        Ok(registry)
    }

    /// Reads every record, for a process other than the running server (the CLI). Each
    /// change made through it also writes a fresh change mark, which tells a running server
    /// to reload ([`Registry::change_mark`]).
    pub fn load_for_tool(store: &Store) -> Result<Self, RegistryError> {
        Ok(Registry {
            tool: true,
            ..Self::load(store)?
        })
    }

    /// The change mark the store holds: it moves whenever another process changes the
    /// records, and never because of the server's own changes (those are in memory already).
    pub fn change_mark(store: &Store) -> Result<Option<Vec<u8>>, RegistryError> {
        Ok(store.meta(REGISTRY, CHANGE_MARK)?)
    }

    fn bump(&mut self, store: &Store) {
        if !self.tool {
            return;
        }
        // Random rather than a counter: two CLI runs that read the same counter would both
        // write n + 1, and a server that had already seen the first would miss the second.
        let mut mark = [0u8; 16];
        if getrandom::fill(&mut mark).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            mark = (nanos ^ u128::from(std::process::id())).to_be_bytes();
        }
        drop(store.put_meta(REGISTRY, CHANGE_MARK, mark.to_vec()));
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
        self.bump(store);
        Ok(pending)
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
        self.bump(store);
        Ok(pending)
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
        let pending = store.put_meta(INDEXES, technician.as_str(), encode(&doc));
        self.bump(store);
        pending
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
        self.bump(store);
        pending
    }

    /// Devices revoked in `self` but not in `before`.
    pub fn newly_revoked(&self, before: &Registry) -> Vec<DeviceRecord> {
        self.devices
            .values()
            .filter(|d| d.revoked_at.is_some())
            .filter(|d| {
                before
                    .devices
                    .get(&d.device_id)
                    .is_none_or(|b| b.revoked_at.is_none())
            })
            .cloned()
            .collect()
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
            // The desk sees the whole branch, but only documents that exist in it.
            Principal::Desk { .. } => {
                if self.jobs.contains_key(doc) {
                    Access::ReadWrite
                } else if self.index_owner.contains_key(doc) {
                    Access::Read
                } else {
                    Access::None
                }
            }
            Principal::Branch { .. } | Principal::Server => Access::None,
        }
    }
}

//! Who may see and change which document.
//!
//! The engine asks an [`AccessPolicy`] before it loads, answers or applies anything, so a
//! forbidden id costs nothing and reveals nothing (DESIGN.md: access decisions come from the
//! server's own records, never from a document a device can write).

use crate::authority::{WriteTable, Writer};
use crate::ids::{BranchId, DeviceId, DocumentId, TechnicianId};

/// The authenticated identity behind a connection, established by the glue from a token
/// before the WebSocket upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// A technician's enrolled device.
    Device {
        device_id: DeviceId,
        technician: TechnicianId,
    },
    /// Service desk staff with a role (dispatcher, manager, analyst).
    Desk { role: String },
    /// A branch edge server syncing with head office.
    Branch { branch_id: BranchId },
    /// The server a client dialled (as seen from the client side).
    Server,
}

impl Principal {
    /// The name a peer id must start with for this principal (see `Engine` join handling).
    pub fn peer_id_stem(&self) -> Option<String> {
        match self {
            Principal::Device { device_id, .. } => Some(device_id.to_string()),
            Principal::Branch { branch_id } => Some(format!("branch-{branch_id}")),
            Principal::Desk { .. } | Principal::Server => None,
        }
    }
}

/// What a principal may do with a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Not even its existence is revealed: `doc-unavailable`, nothing loaded.
    None,
    /// Receives the document; changes it sends are refused.
    Read,
    ReadWrite,
}

/// Which paths of a document a principal's changes may touch (see `authority`).
#[derive(Debug, Clone, Copy)]
pub enum WriteScope {
    /// Any path: a branch sending head office the documents it owns, the server a device
    /// dialled.
    Any,
    /// What `table` grants `writer`; every op of every change is checked before it is
    /// applied. A principal with read access gets its table too, so a refusal can name the
    /// path it tried.
    Table(&'static WriteTable, Writer),
}

/// The source of access decisions. Implementations must be cheap (an in-memory lookup): the
/// engine calls it for every request and every sync message.
pub trait AccessPolicy {
    fn access(&self, who: &Principal, doc: &DocumentId) -> Access;

    /// The paths `who` may write in `doc` (asked when a session opens or its access
    /// changes). Unrestricted unless the policy says otherwise.
    fn write_scope(&self, _who: &Principal, _doc: &DocumentId) -> WriteScope {
        WriteScope::Any
    }
}

/// Full access for everyone: what a device grants the server it dialled.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl AccessPolicy for AllowAll {
    fn access(&self, _who: &Principal, _doc: &DocumentId) -> Access {
        Access::ReadWrite
    }
}

//! Jobs taken off this device's technician while it held changes the server never received
//! (issue 12: no stranded edits). The server no longer lets the device write the job, so the
//! changes are handed to the desk instead (`POST /api/handoffs/{job}` on the server), which
//! merges or discards them; nothing the technician recorded is lost, and the device never
//! calls such a job synced.
//!
//! This file is the state the node keeps per job; `handoff_delivery` sends it. The node marks
//! a job `Pending` when the assignment index stops listing it; while connected,
//! `handoff_delivery::deliver` sends every pending job's unacknowledged changes and records what
//! the server answered. The state is kept in the store's `meta`, so a handover survives a
//! restart and is retried on the next connection until the server has answered.

use fieldsync_shared::time::Timestamp;
use serde::{Deserialize, Serialize};

/// The `meta` namespace of handover states.
pub(crate) const HANDOFFS: &str = "client_handoff";

/// What became of a job's local changes once the job was taken off this device's
/// technician.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Handoff {
    /// Waiting for a connection to hand the desk what the server never received.
    Pending,
    /// The server holds `changes` of them for the desk (0: it already had every change).
    HandedToDesk {
        changes: usize,
        /// The server's id of the handover (none when there was nothing to hand over).
        id: Option<String>,
        at: Timestamp,
    },
    /// The server would not take them, and said why; they stay on the device.
    Refused { code: String, message: String },
}

impl Handoff {
    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

//! What a device tells the app: a stream of [`Event`]s and the current [`SyncState`].

use std::time::Duration;

use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::job::RefusalReason;
use fieldsync_shared::job::approvals::ApprovalKind;

/// Where a change came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// An edit made through this device.
    Local,
    /// Changes received from the server (other devices, the desk, the server itself).
    Remote,
}

/// Something that happened on the device. Events are a notification, not a log: a slow
/// receiver may miss some (it then gets `Lagged` from the channel) and should re-read the
/// state it shows.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A document's stored content changed (a job, or the assignment index).
    DocChanged { doc: DocumentId, origin: Origin },
    /// The assignment index now lists this job; the device syncs it from now on.
    JobAssigned { job: DocumentId },
    /// The assignment index no longer lists this job. Local changes the server never
    /// received are handed to the desk ([`Event::JobHandedOver`]).
    JobUnassigned { job: DocumentId },
    /// A job taken off this technician: the server holds `changes` of its local changes for
    /// the desk, which merges or discards them (0: the server already had everything).
    JobHandedOver { job: DocumentId, changes: usize },
    /// The server would not take a job's handed-over changes; they stay on the device.
    HandoffRefused {
        job: DocumentId,
        code: String,
        message: String,
    },
    /// The server does not have the document or will not share it (e.g. unassigned).
    DocUnavailable { doc: DocumentId },
    /// The server now holds every local change of the document (it is on the server's disk).
    Synced { doc: DocumentId },
    /// The edge server signed the job's service report.
    ReportSigned { job: DocumentId, report_id: String },
    /// The edge server refused to finalise the job, with every reason.
    ReportRefused {
        job: DocumentId,
        reasons: Vec<RefusalReason>,
    },
    /// The desk decided one of the job's approval requests (R12, R18, R31).
    ApprovalDecided {
        job: DocumentId,
        approval: String,
        kind: ApprovalKind,
        approved: bool,
        /// Who decided (`desk:manager`, `desk:director`).
        by: String,
        note: String,
    },
    /// The edge holds an attachment's bytes and checked their SHA-256 (issue 15).
    AttachmentUploaded { job: DocumentId, digest: String },
    /// An attachment was not uploaded and will not be retried as it is: the edge refused it
    /// (`attachment_too_large`, `digest_mismatch`, `not_your_job`…) or its bytes changed on
    /// the device (`attachment_corrupt`).
    AttachmentRefused {
        job: DocumentId,
        digest: String,
        code: String,
        message: String,
    },
    /// The connection state changed.
    Sync(SyncState),
}

/// The state of background sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncState {
    /// Not syncing: never started, or stopped by the app.
    Offline,
    /// Dialling the server (`attempt` counts failures since the last good connection).
    Connecting { attempt: u32 },
    /// Connected and joined: changes flow both ways.
    Connected,
    /// The connection failed or ended; the next attempt comes after `retry_in`.
    Disconnected { reason: String, retry_in: Duration },
    /// The server refused the device's credentials and renewing them did not help (a revoked
    /// device, a token the server never issued). Sync has stopped; it takes the app to act
    /// (re-enroll, sign in again) and call `start_sync` again.
    Refused { code: String, reason: String },
}

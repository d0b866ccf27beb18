//! The technician device library: a local SQLite store that works fully offline, typed job
//! edits, the customer's signed acknowledgement, and background sync with the branch server.
//!
//! A technician app opens a [`Device`] (its store file, its key file, who it is), edits jobs
//! with typed methods ([`JobEdit`], [`Device::add_part`], [`Device::acknowledge`]…) whether or
//! not a network exists, and calls [`Device::start_sync`] with the server's URL and a token
//! source (and, for a `wss://` server with its branch's own CA, that CA:
//! [`SyncOptions::with_ca_file`]; module [`tls`]). Every edit is durable in the store before the call returns; sync runs in the
//! background, reconnecting with backoff, and picks up unsynced changes after a restart.
//! [`Device::events`] and [`Device::job_status`] tell the app what changed and what is still
//! waiting for the server.
//!
//! Inside, one task per device owns the shared sync engine (client role) for as long as the
//! store is open (`node`); connections attach to it and detach (`connection`), redialled by a
//! supervisor (`sync`). [`SyncClient`] is a bare single connection, for tools and tests.

pub mod attachments;
#[cfg(feature = "cli")]
pub mod cli;
mod connection;
mod device;
mod edit;
pub mod enroll;
mod events;
mod handoff;
mod handoff_delivery;
mod node;
mod summary;
mod sync;
pub mod tls;
mod url;

pub use connection::{ClientEvent, ConnectError, ConnectOptions, SyncClient};
pub use device::{
    AckStatus, ApprovalDraft, ClientError, Device, DeviceConfig, JobEntry, JobStatus,
};
pub use edit::{EditFailure, JobEdit, edit_automerge};
pub use enroll::{DeviceToken, EnrollError, Enrollment, KeyRenewal, enroll};
pub use events::{Event, Origin, SyncState};
pub use handoff::Handoff;
pub use node::now;
pub use summary::{JobStage, JobState};
pub use sync::{Backoff, SyncOptions, TokenError, TokenFuture, TokenSource};
pub use tls::{ClientTls, Roots, TlsError};

pub use attachments::{LocalBlobs, UploadOutcome};
pub use fieldsync_report_print::{Language, PrintOptions, Printed, Zone};
pub use fieldsync_shared::job::approvals::{Approval, ApprovalKind, Decision, TravelExpense};
pub use fieldsync_shared::job::attachments::{AttachmentKind, AttachmentRef};
/// What an app needs from the shared model to fill in edits.
pub use fieldsync_shared::job::doc::{PartDraft, PartUpdate};
pub use fieldsync_shared::report::AckDraft;

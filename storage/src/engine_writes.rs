//! The sync engine's writes (`fieldsync_shared::sync::WriteOp`) carried out on a [`Store`]:
//! the one place where an `Effect::Write` becomes storage calls, for the edge server's hub
//! and the device's node alike.

use fieldsync_shared::sync::WriteOp;

use crate::Store;

impl Store {
    /// Queues one engine write. `done` is called from the writer thread with the outcome
    /// once the transaction holding it has committed (or failed): the engine's
    /// `Input::WriteDone`, which is what lets it announce the change.
    pub fn perform(&self, op: WriteOp, done: impl FnOnce(Result<(), String>) + Send + 'static) {
        match op {
            WriteOp::AppendChanges { doc, bytes } => self
                .append_changes(&doc.to_string(), bytes)
                .on_complete(move |r| done(r.map(|_| ()).map_err(|e| e.to_string()))),
            WriteOp::Compact { doc, snapshot } => self
                .replace_with_snapshot(&doc.to_string(), snapshot)
                .on_complete(move |r| done(r.map(|_| ()).map_err(|e| e.to_string()))),
            WriteOp::PutSyncState {
                doc,
                storage_id,
                state,
            } => self
                .put_sync_state(storage_id.as_str(), &doc.to_string(), state)
                .on_complete(move |r| done(r.map_err(|e| e.to_string()))),
        }
    }
}

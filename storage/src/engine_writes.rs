//! The sync engine's writes (`fieldsync_shared::sync::WriteOp`) carried out on a [`Store`]:
//! the one place where an `Effect::Write` becomes storage calls, for the edge server's hub
//! and the device's node alike.

use fieldsync_shared::sync::WriteOp;

use crate::Store;
use crate::chunk::ChunkKey;
use crate::writer;

impl Store {
    /// Queues one engine write. `done` is called from the writer thread with the outcome
    /// once the transaction holding it has committed (or failed): the engine's
    /// `Input::WriteDone`, which is what lets it announce the change.
    pub fn perform(&self, op: WriteOp, done: impl FnOnce(Result<(), String>) + Send + 'static) {
        self.perform_summarized(op, None, done);
    }

    /// [`Store::perform`], storing with the write `summary`: the summary of the document as
    /// it stands once the write is applied (see [`Store::doc_summaries`]). Both go in one
    /// savepoint, so a kill leaves both or neither.
    pub fn perform_summarized(
        &self,
        op: WriteOp,
        summary: Option<Vec<u8>>,
        done: impl FnOnce(Result<(), String>) + Send + 'static,
    ) {
        let (doc, op) = match op {
            WriteOp::AppendChanges { doc, bytes } => (
                doc,
                writer::WriteOp::AppendChunk {
                    doc_id: doc.to_string(),
                    key: ChunkKey::of(&bytes),
                    data: bytes,
                },
            ),
            WriteOp::Compact { doc, snapshot } => (
                doc,
                writer::WriteOp::ReplaceWithSnapshot {
                    doc_id: doc.to_string(),
                    key: ChunkKey::of(&snapshot),
                    snapshot,
                },
            ),
            WriteOp::PutSyncState {
                doc,
                storage_id,
                state,
            } => (
                doc,
                writer::WriteOp::PutSyncState {
                    peer: storage_id.as_str().to_owned(),
                    doc_id: doc.to_string(),
                    state,
                },
            ),
        };
        let op = match summary {
            Some(summary) => writer::WriteOp::Summarized {
                op: Box::new(op),
                doc_id: doc.to_string(),
                summary,
            },
            None => op,
        };
        self.submit(op, ())
            .on_complete(move |r| done(r.map_err(|e| e.to_string())));
    }
}

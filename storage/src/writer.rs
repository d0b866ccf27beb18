//! The single writer thread and its group commit.
//!
//! SQLite takes one writer at a time, and with `synchronous=FULL` every commit waits for an
//! fsync. So one thread owns the write connection and, each round, takes everything queued
//! (up to `max_batch`), applies it in ONE transaction, commits, and only then completes each
//! write. The writes that arrive while an fsync is under way share the next one.
//!
//! Each write runs inside its own savepoint: a write that SQLite rejects (a constraint) is
//! rolled back alone and completed with its error, while the others in the transaction go
//! on. If the transaction itself cannot begin or commit, every write in it fails.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError};

use rusqlite::{Connection, params};

use crate::StorageError;
use crate::chunk::{ChunkKey, ChunkKind};
use crate::maintenance::{Maintenance, TallyChange};
use crate::pending::Completer;
use crate::record::{Record, RevisionConflict};
use crate::stats::Counters;

/// Completes one write; it turns the writer's `()` into the value the caller gets.
pub(crate) type Done = Box<dyn FnOnce(Result<(), StorageError>) + Send>;

/// What the writer is asked to do.
pub(crate) enum Command {
    Write {
        op: WriteOp,
        done: Done,
    },
    /// Completes once every command queued before it has been committed or has failed.
    Flush(Completer<()>),
    /// Compacts every document due now (after the writes queued before it), then completes
    /// with how many were compacted.
    CompactDue(Completer<usize>),
}

/// One write operation.
#[derive(Debug)]
pub(crate) enum WriteOp {
    AppendChunk {
        doc_id: String,
        key: ChunkKey,
        data: Vec<u8>,
    },
    Compact {
        doc_id: String,
        key: ChunkKey,
        snapshot: Vec<u8>,
        replaced: Vec<ChunkKey>,
    },
    ReplaceWithSnapshot {
        doc_id: String,
        key: ChunkKey,
        snapshot: Vec<u8>,
    },
    DeleteDoc {
        doc_id: String,
    },
    PutSyncState {
        peer: String,
        doc_id: String,
        state: Vec<u8>,
    },
    DeleteSyncState {
        peer: String,
        doc_id: String,
    },
    PutMeta {
        namespace: String,
        key: String,
        value: Vec<u8>,
    },
    DeleteMeta {
        namespace: String,
        key: String,
    },
    PutRecord(Record),
    /// Moves a worker's watermark up to `seq` (never down).
    PutWatermark {
        worker: String,
        seq: i64,
    },
    HeadOffice(Box<crate::head_office::Write>),
    /// Stores (or replaces) a document's summary (migration 0004).
    PutSummary {
        doc_id: String,
        body: Vec<u8>,
    },
    /// `op` and the summary of the document as it stands after it, in one savepoint: both
    /// are stored, or neither.
    Summarized {
        op: Box<WriteOp>,
        doc_id: String,
        summary: Vec<u8>,
    },
}

/// The writer thread's loop. It ends when every sender is gone and the queue is drained,
/// which is how the store shuts it down without losing a queued write. When nothing is
/// queued it compacts one document due at a time, and looks at the queue again in between.
pub(crate) fn run(
    mut conn: Connection,
    commands: Receiver<Command>,
    max_batch: usize,
    counters: Arc<Counters>,
    mut maintenance: Maintenance,
) {
    let mut writes = Vec::new();
    let mut flushes = Vec::new();
    let mut compactions = Vec::new();
    loop {
        let first = if maintenance.has_work() {
            match commands.try_recv() {
                Ok(command) => command,
                Err(TryRecvError::Empty) => {
                    maintenance.compact_next(&conn, &counters);
                    continue;
                }
                Err(TryRecvError::Disconnected) => break,
            }
        } else {
            match commands.recv() {
                Ok(command) => command,
                Err(_) => break,
            }
        };
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(command) = next.take() {
            match command {
                Command::Write { op, done } => writes.push((op, done)),
                Command::Flush(completer) => flushes.push(completer),
                Command::CompactDue(completer) => compactions.push(completer),
            }
            taken += 1;
            if taken < max_batch {
                next = commands.try_recv().ok();
            }
        }
        if !writes.is_empty() {
            for change in commit_batch(&mut conn, &mut writes, &counters) {
                maintenance.record(change);
            }
            maintenance.after_commit(&conn, &counters);
        }
        for flush in flushes.drain(..) {
            flush.complete(Ok(()));
        }
        if !compactions.is_empty() {
            let before = counters.snapshot().compactions;
            while maintenance.has_work() {
                maintenance.compact_next(&conn, &counters);
            }
            let done = usize::try_from(counters.snapshot().compactions - before).unwrap_or(0);
            for completer in compactions.drain(..) {
                completer.complete(Ok(done));
            }
        }
    }
    maintenance.finish(&conn, &counters);
}

/// Applies `writes` in one transaction and completes each one after COMMIT has returned.
/// Returns what the committed writes did to documents' chunks.
fn commit_batch(
    conn: &mut Connection,
    writes: &mut Vec<(WriteOp, Done)>,
    counters: &Counters,
) -> Vec<TallyChange> {
    let batch = writes.len();
    let mut tally = Vec::new();
    if let Err(error) = exec(conn, "BEGIN IMMEDIATE") {
        fail_all(writes.drain(..).map(|(_, done)| done), error, counters);
        return tally;
    }

    let mut outcomes: Vec<(Done, Result<(), StorageError>)> = Vec::with_capacity(batch);
    let mut queue = writes.drain(..);
    while let Some((op, done)) = queue.next() {
        match apply_in_savepoint(conn, &op) {
            Ok(outcome) => {
                if outcome.is_ok() {
                    tally.extend(tally_change(&op));
                }
                outcomes.push((done, outcome.map_err(|e| write_error(e, &op))));
            }
            // The transaction is no longer usable: nothing of this batch can be stored, and
            // the writes not reached yet fail with the same error.
            Err(error) => {
                rollback(conn);
                let applied = outcomes.into_iter().map(|(done, _)| done);
                let rest = queue.map(|(_, done)| done);
                fail_all(
                    applied.chain(std::iter::once(done)).chain(rest),
                    error,
                    counters,
                );
                return Vec::new();
            }
        }
    }
    drop(queue);

    if let Err(error) = exec(conn, "COMMIT") {
        rollback(conn);
        fail_all(outcomes.into_iter().map(|(done, _)| done), error, counters);
        return Vec::new();
    }

    let committed = outcomes
        .iter()
        .filter(|(_, outcome)| outcome.is_ok())
        .count();
    counters.committed(batch, committed);
    for (done, outcome) in outcomes {
        done(outcome);
    }
    tally
}

/// What a write that committed did to its document's chunks.
fn tally_change(op: &WriteOp) -> Option<TallyChange> {
    match op {
        WriteOp::Summarized { op, .. } => tally_change(op),
        WriteOp::AppendChunk { doc_id, data, .. } => Some(TallyChange::Appended {
            doc_id: doc_id.clone(),
            bytes: data.len() as u64,
        }),
        WriteOp::Compact {
            doc_id, replaced, ..
        } if replaced.is_empty() => {
            // A snapshot beside the chunks it does not name: one more chunk.
            Some(TallyChange::Appended {
                doc_id: doc_id.clone(),
                bytes: 0,
            })
        }
        WriteOp::Compact { doc_id, .. } | WriteOp::ReplaceWithSnapshot { doc_id, .. } => {
            Some(TallyChange::Replaced {
                doc_id: doc_id.clone(),
            })
        }
        WriteOp::DeleteDoc { doc_id } => Some(TallyChange::Removed {
            doc_id: doc_id.clone(),
        }),
        _ => None,
    }
}

/// Runs one write inside a savepoint.
///
/// The outer `Ok` says the transaction is still usable; the inner result is this write's
/// own outcome (rolled back alone if it failed). The outer `Err` says the transaction is
/// gone, e.g. SQLite rolled it back by itself after a full disk or an I/O error.
fn apply_in_savepoint(
    conn: &Connection,
    op: &WriteOp,
) -> Result<Result<(), rusqlite::Error>, rusqlite::Error> {
    exec(conn, "SAVEPOINT write")?;
    match apply(conn, op) {
        Ok(()) => {
            exec(conn, "RELEASE write")?;
            Ok(Ok(()))
        }
        Err(error) => {
            if conn.is_autocommit() {
                return Err(error);
            }
            exec(conn, "ROLLBACK TO write")?;
            exec(conn, "RELEASE write")?;
            Ok(Err(error))
        }
    }
}

fn apply(conn: &Connection, op: &WriteOp) -> rusqlite::Result<()> {
    match op {
        WriteOp::AppendChunk { doc_id, key, data } => {
            insert_chunk(conn, doc_id, ChunkKind::Incremental, key, data)?;
        }
        WriteOp::Compact {
            doc_id,
            key,
            snapshot,
            replaced,
        } => {
            // Only the chunks the snapshot covers go: chunks appended after the caller read
            // the document are not in `replaced` and stay.
            let mut delete =
                conn.prepare_cached("DELETE FROM doc_chunks WHERE doc_id = ?1 AND key = ?2")?;
            for old in replaced {
                delete.execute(params![doc_id, old.as_bytes()])?;
            }
            insert_chunk(conn, doc_id, ChunkKind::Snapshot, key, snapshot)?;
        }
        WriteOp::ReplaceWithSnapshot {
            doc_id,
            key,
            snapshot,
        } => {
            // Every chunk stored so far goes: the writer applies operations in the order they
            // were submitted, so the snapshot covers all of them.
            conn.prepare_cached("DELETE FROM doc_chunks WHERE doc_id = ?1")?
                .execute([doc_id])?;
            insert_chunk(conn, doc_id, ChunkKind::Snapshot, key, snapshot)?;
        }
        WriteOp::DeleteDoc { doc_id } => {
            conn.prepare_cached("DELETE FROM doc_chunks WHERE doc_id = ?1")?
                .execute([doc_id])?;
            conn.prepare_cached("DELETE FROM sync_states WHERE doc_id = ?1")?
                .execute([doc_id])?;
            conn.prepare_cached("DELETE FROM doc_summaries WHERE doc_id = ?1")?
                .execute([doc_id])?;
        }
        WriteOp::PutSyncState {
            peer,
            doc_id,
            state,
        } => {
            conn.prepare_cached(
                "INSERT INTO sync_states (peer_storage_id, doc_id, state) VALUES (?1, ?2, ?3)
                 ON CONFLICT (peer_storage_id, doc_id) DO UPDATE SET state = excluded.state",
            )?
            .execute(params![peer, doc_id, state])?;
        }
        WriteOp::DeleteSyncState { peer, doc_id } => {
            conn.prepare_cached(
                "DELETE FROM sync_states WHERE peer_storage_id = ?1 AND doc_id = ?2",
            )?
            .execute([peer, doc_id])?;
        }
        WriteOp::PutMeta {
            namespace,
            key,
            value,
        } => {
            conn.prepare_cached(
                "INSERT INTO meta (namespace, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![namespace, key, value])?;
        }
        WriteOp::DeleteMeta { namespace, key } => {
            conn.prepare_cached("DELETE FROM meta WHERE namespace = ?1 AND key = ?2")?
                .execute([namespace, key])?;
        }
        WriteOp::PutRecord(record) => put_record(conn, record)?,
        WriteOp::PutWatermark { worker, seq } => {
            conn.prepare_cached(
                "INSERT INTO doc_watermarks (worker, seq) VALUES (?1, ?2)
                 ON CONFLICT (worker) DO UPDATE SET seq = MAX(seq, excluded.seq)",
            )?
            .execute(params![worker, seq])?;
        }
        WriteOp::HeadOffice(write) => crate::head_office::apply(conn, write)?,
        WriteOp::PutSummary { doc_id, body } => put_summary(conn, doc_id, body)?,
        WriteOp::Summarized {
            op,
            doc_id,
            summary,
        } => {
            // The chunk first: its insert deletes the old summary (the trigger of 0004),
            // then the new one goes in. One savepoint holds both.
            apply(conn, op)?;
            put_summary(conn, doc_id, summary)?;
        }
    }
    Ok(())
}

fn put_summary(conn: &Connection, doc_id: &str, body: &[u8]) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO doc_summaries (doc_id, body) VALUES (?1, ?2)
         ON CONFLICT (doc_id) DO UPDATE SET body = excluded.body",
    )?
    .execute(params![doc_id, body])?;
    Ok(())
}

/// Writes revision n of a record only over revision n - 1 (or over nothing when n = 1). A
/// refusal travels as a boxed [`RevisionConflict`] inside a rusqlite error (the only variant
/// that carries a value of ours); `write_error` turns it back into its own variant.
fn put_record(conn: &Connection, record: &Record) -> rusqlite::Result<()> {
    let revision = i64::try_from(record.revision).unwrap_or(i64::MAX);
    let changed = if revision == 1 {
        conn.prepare_cached(
            "INSERT INTO records (kind, id, revision, lookup, open, body)
             VALUES (?1, ?2, 1, ?3, ?4, ?5) ON CONFLICT (kind, id) DO NOTHING",
        )?
        .execute(params![
            record.kind,
            record.id,
            record.lookup,
            record.open,
            record.body
        ])?
    } else {
        conn.prepare_cached(
            "UPDATE records SET revision = ?3, lookup = ?4, open = ?5, body = ?6
             WHERE kind = ?1 AND id = ?2 AND revision = ?3 - 1",
        )?
        .execute(params![
            record.kind,
            record.id,
            revision,
            record.lookup,
            record.open,
            record.body
        ])?
    };
    if changed == 0 {
        return Err(rusqlite::Error::ToSqlConversionFailure(Box::new(
            RevisionConflict,
        )));
    }
    Ok(())
}

/// One write's own failure, as its caller sees it.
fn write_error(error: rusqlite::Error, op: &WriteOp) -> StorageError {
    if let WriteOp::Summarized { op, .. } = op {
        return write_error(error, op);
    }
    match (&error, op) {
        (rusqlite::Error::ToSqlConversionFailure(e), WriteOp::PutRecord(record))
            if e.is::<RevisionConflict>() =>
        {
            StorageError::RevisionConflict {
                kind: record.kind.clone(),
                id: record.id.clone(),
                expected: record.revision.saturating_sub(1),
            }
        }
        _ => StorageError::Sqlite(error),
    }
}

/// Stores a chunk; the same bytes stored again (a retried write) keep the existing row.
fn insert_chunk(
    conn: &Connection,
    doc_id: &str,
    kind: ChunkKind,
    key: &ChunkKey,
    data: &[u8],
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO doc_chunks (doc_id, kind, key, data) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (doc_id, key) DO NOTHING",
    )?
    .execute(params![doc_id, kind.as_sql(), key.as_bytes(), data])?;
    Ok(())
}

fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// Ends a failed transaction, if SQLite has not already.
fn rollback(conn: &Connection) {
    if !conn.is_autocommit() {
        // If even ROLLBACK fails the connection is unusable; the next BEGIN reports it.
        let _ = exec(conn, "ROLLBACK");
    }
}

fn fail_all(dones: impl Iterator<Item = Done>, error: rusqlite::Error, counters: &Counters) {
    let dones: Vec<Done> = dones.collect();
    counters.batch_failed(dones.len());
    let error = Arc::new(error);
    for done in dones {
        done(Err(StorageError::BatchFailed(Arc::clone(&error))));
    }
}

#[cfg(test)]
mod tests {
    use super::WriteOp;
    use crate::chunk::ChunkKey;
    use crate::{Store, StoreConfig};

    const DOC: &str = "2j9knpCseyhnK8izDmLpGP5WMdZQ";

    /// A summarized write is one savepoint: when its summary cannot be stored, neither is its
    /// chunk (and the reverse), so no kill or failure leaves one without the other.
    #[test]
    fn a_summarized_write_stores_both_or_neither() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path().join("s.sqlite"), StoreConfig::default())?;
        let chunk = |data: &[u8]| WriteOp::AppendChunk {
            doc_id: DOC.to_owned(),
            key: ChunkKey::of(data),
            data: data.to_vec(),
        };
        store
            .submit(
                WriteOp::Summarized {
                    op: Box::new(chunk(b"first")),
                    doc_id: DOC.to_owned(),
                    summary: b"after first".to_vec(),
                },
                (),
            )
            .wait()?;
        // The summary's insert fails (an empty id breaks the table's CHECK)...
        let failed = store
            .submit(
                WriteOp::Summarized {
                    op: Box::new(chunk(b"second")),
                    doc_id: String::new(),
                    summary: b"after second".to_vec(),
                },
                (),
            )
            .wait();
        assert!(failed.is_err());
        // ...so the chunk is not stored either, and the summary still describes the document.
        assert_eq!(store.load_doc(DOC)?, Some(vec![b"first".to_vec()]));
        assert_eq!(store.doc_summary(DOC)?, Some(b"after first".to_vec()));
        Ok(())
    }
}

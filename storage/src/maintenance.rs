//! What the writer does besides writes (issue 19): compacting documents whose stored chunks
//! piled up, in its idle time, and checkpointing the write-ahead log so it stays bounded.
//!
//! **Compaction** replaces a document's chunks with one snapshot (automerge `save` of all of
//! them, made by `fieldsync_shared::stored::snapshot`). The chunks are read, the snapshot
//! stored and exactly the rows read deleted in ONE transaction of the writer, the only
//! writer of the file: a kill at any moment leaves either the old chunks or the snapshot,
//! never neither. The writer keeps a tally per document (chunks, incremental bytes; seeded
//! from the table when it starts, then kept from its own writes) and compacts one document
//! per idle moment, so a write waits at most for one compaction. The tally is a hint: the
//! compaction counts the rows it reads.
//!
//! **Checkpoints.** SQLite's automatic checkpoint is off on the write connection; a WAL hook
//! tells the writer how many pages the log holds after each commit, and past
//! [`Checkpoint::after_pages`] it runs a PASSIVE checkpoint once the commit's writes are
//! completed (it never waits for readers, so it never delays a write by more than its own
//! copy). `journal_size_limit` cuts the log file back once a checkpoint emptied it. When the
//! store closes, a TRUNCATE checkpoint leaves an empty log. The durability promise does not
//! change: a write is still completed only after its COMMIT, with the log synced.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use rusqlite::{Connection, params};

use crate::chunk::{ChunkKey, ChunkKind};
use crate::config::{Checkpoint, Compaction};
use crate::stats::Counters;

/// What a committed write did to a document's chunks, for the tally.
#[derive(Debug)]
pub(crate) enum TallyChange {
    Appended { doc_id: String, bytes: u64 },
    Replaced { doc_id: String },
    Removed { doc_id: String },
}

#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    chunks: usize,
    incremental_bytes: u64,
}

/// The writer's maintenance state.
pub(crate) struct Maintenance {
    compaction: Option<Compaction>,
    checkpoint: Option<Checkpoint>,
    tallies: HashMap<String, Tally>,
    /// Documents past the threshold, compacted in this order (ids sorted: deterministic).
    due: BTreeSet<String>,
    /// Pages in the log after the last commit, written by the WAL hook.
    wal_pages: Arc<AtomicU32>,
}

impl Maintenance {
    /// Sets the write connection up and reads the tallies. A failure here leaves maintenance
    /// off rather than the store closed: it is an optimisation, never a condition of writing.
    pub(crate) fn start(
        conn: &mut Connection,
        compaction: Option<Compaction>,
        checkpoint: Option<Checkpoint>,
    ) -> Self {
        let wal_pages = Arc::new(AtomicU32::new(0));
        let checkpoint = checkpoint.filter(|c| set_up_checkpoints(conn, *c, &wal_pages).is_ok());
        let mut maintenance = Self {
            compaction,
            checkpoint,
            tallies: HashMap::new(),
            due: BTreeSet::new(),
            wal_pages,
        };
        if maintenance.compaction.is_some() {
            match read_tallies(conn) {
                Ok(tallies) => {
                    for (doc_id, tally) in tallies {
                        maintenance.set(doc_id, tally);
                    }
                }
                Err(_) => maintenance.compaction = None,
            }
        }
        maintenance
    }

    /// Whether the writer has something to do when no write is queued.
    pub(crate) fn has_work(&self) -> bool {
        !self.due.is_empty()
    }

    pub(crate) fn record(&mut self, change: TallyChange) {
        if self.compaction.is_none() {
            return;
        }
        match change {
            TallyChange::Appended { doc_id, bytes } => {
                let mut tally = self.tallies.get(&doc_id).copied().unwrap_or_default();
                tally.chunks += 1;
                tally.incremental_bytes += bytes;
                self.set(doc_id, tally);
            }
            TallyChange::Replaced { doc_id } => {
                let one = Tally {
                    chunks: 1,
                    incremental_bytes: 0,
                };
                self.set(doc_id, one);
            }
            TallyChange::Removed { doc_id } => {
                self.due.remove(&doc_id);
                self.tallies.remove(&doc_id);
            }
        }
    }

    fn set(&mut self, doc_id: String, tally: Tally) {
        let Some(policy) = self.compaction else {
            return;
        };
        if tally.chunks > policy.max_chunks
            || (tally.chunks > 1 && tally.incremental_bytes > policy.max_incremental_bytes)
        {
            self.due.insert(doc_id.clone());
        } else {
            self.due.remove(&doc_id);
        }
        self.tallies.insert(doc_id, tally);
    }

    /// Compacts the next document due. A document that cannot be compacted (damaged, or
    /// holding changes without their dependency) is left as it is and not tried again until
    /// its next write.
    pub(crate) fn compact_next(&mut self, conn: &Connection, counters: &Counters) {
        let Some(doc_id) = self.due.pop_first() else {
            return;
        };
        match compact(conn, &doc_id) {
            Ok(Some(removed)) => {
                counters.compacted(removed);
                self.record(TallyChange::Replaced { doc_id });
            }
            Ok(None) => {
                counters.compaction_skipped();
                self.tallies.remove(&doc_id);
            }
            Err(_) => {
                counters.compaction_skipped();
                self.tallies.remove(&doc_id);
            }
        }
    }

    /// After a commit's writes are completed: a PASSIVE checkpoint if the log is past its
    /// bound. Its failure (e.g. `SQLITE_BUSY` from another process's checkpoint) is harmless:
    /// the next commit tries again.
    pub(crate) fn after_commit(&mut self, conn: &Connection, counters: &Counters) {
        let Some(checkpoint) = self.checkpoint else {
            return;
        };
        if self.wal_pages.load(Ordering::Relaxed) < checkpoint.after_pages {
            return;
        }
        if run_checkpoint(conn, "PASSIVE").is_ok() {
            counters.checkpointed();
            self.wal_pages.store(0, Ordering::Relaxed);
        }
    }

    /// When the writer stops: empty the log and cut its file to nothing, if no other
    /// connection (another process) is using it. TRUNCATE waits for readers through the busy
    /// handler; closing must not wait on another process, so it gets no busy timeout: a log
    /// left behind is only replayed by the next open.
    pub(crate) fn finish(&mut self, conn: &Connection, counters: &Counters) {
        if self.checkpoint.is_none() || conn.busy_timeout(std::time::Duration::ZERO).is_err() {
            return;
        }
        if run_checkpoint(conn, "TRUNCATE").is_ok() {
            counters.checkpointed();
        }
    }
}

fn set_up_checkpoints(
    conn: &mut Connection,
    checkpoint: Checkpoint,
    wal_pages: &Arc<AtomicU32>,
) -> rusqlite::Result<()> {
    let page_size: i64 = conn.pragma_query_value(None, "page_size", |row| row.get(0))?;
    // The automatic checkpoint is a WAL hook too: installing ours replaces it.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.pragma_update(
        None,
        "journal_size_limit",
        i64::from(checkpoint.after_pages) * page_size,
    )?;
    let pages = Arc::clone(wal_pages);
    conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, frames: i32| {
        pages.store(u32::try_from(frames).unwrap_or(0), Ordering::Relaxed);
        Ok(())
    }))
}

fn run_checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<()> {
    // One row: (busy, frames in the log, frames checkpointed).
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()))
}

fn read_tallies(conn: &Connection) -> rusqlite::Result<Vec<(String, Tally)>> {
    let mut stmt = conn.prepare(
        "SELECT doc_id, count(*), total(CASE kind WHEN 'incremental' THEN length(data) END)
         FROM doc_chunks GROUP BY doc_id",
    )?;
    let rows = stmt.query_map([], |row| {
        let chunks: i64 = row.get(1)?;
        let bytes: f64 = row.get(2)?;
        Ok((
            row.get(0)?,
            Tally {
                chunks: usize::try_from(chunks).unwrap_or(0),
                incremental_bytes: bytes as u64,
            },
        ))
    })?;
    rows.collect()
}

/// Replaces the document's chunks with one snapshot, in one transaction. `Ok(Some(n))`: the
/// `n` chunks read were replaced; `Ok(None)`: nothing to do or nothing safe to do.
fn compact(conn: &Connection, doc_id: &str) -> rusqlite::Result<Option<usize>> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = compact_in_transaction(conn, doc_id);
    match result {
        Ok(Some(_)) => {
            if let Err(error) = conn.execute_batch("COMMIT") {
                rollback(conn);
                return Err(error);
            }
        }
        Ok(None) | Err(_) => rollback(conn),
    }
    result
}

fn compact_in_transaction(conn: &Connection, doc_id: &str) -> rusqlite::Result<Option<usize>> {
    let rows: Vec<(i64, Vec<u8>)> = {
        let mut stmt = conn.prepare_cached(
            "SELECT id, data FROM doc_chunks WHERE doc_id = ?1
             ORDER BY kind = 'snapshot' DESC, id",
        )?;
        let rows = stmt.query_map([doc_id], |row| Ok((row.get(0)?, row.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    if rows.len() < 2 {
        return Ok(None);
    }
    let (ids, chunks): (Vec<i64>, Vec<Vec<u8>>) = rows.into_iter().unzip();
    let Ok(Some(snapshot)) = fieldsync_shared::stored::snapshot(&chunks) else {
        return Ok(None);
    };
    drop(chunks);
    // Exactly the rows read go, in the transaction that stores what replaces them.
    let mut delete = conn.prepare_cached("DELETE FROM doc_chunks WHERE id = ?1")?;
    for id in &ids {
        delete.execute([id])?;
    }
    let key = ChunkKey::of(&snapshot);
    conn.prepare_cached(
        "INSERT INTO doc_chunks (doc_id, kind, key, data) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (doc_id, key) DO NOTHING",
    )?
    .execute(params![
        doc_id,
        ChunkKind::Snapshot.as_sql(),
        key.as_bytes(),
        snapshot
    ])?;
    Ok(Some(ids.len()))
}

fn rollback(conn: &Connection) {
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
}

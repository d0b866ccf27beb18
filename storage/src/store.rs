use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::chunk::{Chunk, ChunkKey, ChunkKind};
use crate::clean_close;
use crate::maintenance::Maintenance;
use crate::migrations::{self, SCHEMA_VERSION};
use crate::pending::{Pending, pending};
use crate::record::{Record, RecordFilter};
use crate::stats::{Counters, StoreStats};
use crate::writer::{self, Command, Done, WriteOp};
use crate::{StorageError, StoreConfig};

/// How [`Store::open`] found the database sound (see `clean_close`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenCheck {
    /// `PRAGMA quick_check` ran and passed: the file was new, or its last close was not
    /// known to be clean (a crash, a kill, another program writing it, an unchecked open).
    Checked,
    /// The check was skipped: the last store to close the file closed it cleanly after a
    /// checked open, and the file is exactly as it left it (its clean-close stamp).
    CleanClose,
    /// No check ([`StoreConfig::quick_check`] off).
    Off,
}

/// The durable store of one fieldsync node (edge server, head office or technician device).
///
/// Writes go to one writer thread and return a [`Pending`] that completes after the
/// transaction holding them has committed; reads run on read-only connections at once and
/// block the calling thread briefly (call them from `spawn_blocking` in async code).
///
/// `Store` is `Send + Sync`: share it behind an `Arc`. Dropping it (or [`Store::close`])
/// commits every write already queued before the writer thread stops.
pub struct Store {
    path: PathBuf,
    /// How the file was found sound at open; [`OpenCheck::Off`] leaves no clean-close stamp.
    open_check: OpenCheck,
    commands: Option<Sender<Command>>,
    writer: Option<JoinHandle<()>>,
    readers: Readers,
    counters: Arc<Counters>,
}

impl Store {
    /// Opens the database at `path`, creating it (and its folder) if missing, and brings its
    /// schema up to date.
    ///
    /// Refuses a file that is not a SQLite database ([`StorageError::NotADatabase`]), one
    /// that is damaged ([`StorageError::Corrupt`], when `config.quick_check` is on) and one
    /// written by a newer program ([`StorageError::NewerSchema`]); none of these is modified.
    ///
    /// With `config.quick_check` on, the check runs unless the file's last close was clean
    /// and nothing wrote it since ([`OpenCheck::CleanClose`]; the rule is in `clean_close`).
    pub fn open(path: impl AsRef<Path>, config: StoreConfig) -> Result<Store, StorageError> {
        let path = path.as_ref().to_owned();
        // Read before the file is opened, and removed whatever it says and whatever the
        // config: a stamp speaks for the one close that wrote it.
        let clean = clean_close::take(&path);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StorageError::Io {
                path: parent.to_owned(),
                source,
            })?;
        }
        let classify = |error| StorageError::classify(error, &path);

        let mut conn = Connection::open(&path).map_err(classify)?;
        conn.busy_timeout(config.busy_timeout).map_err(classify)?;

        // Checks that only read come first, so that a refused file is left as it was.
        let found = migrations::user_version(&conn).map_err(classify)?;
        if found > SCHEMA_VERSION {
            return Err(StorageError::NewerSchema {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        let open_check = match (config.quick_check, clean) {
            (false, _) => OpenCheck::Off,
            (true, true) => OpenCheck::CleanClose,
            (true, false) => {
                quick_check(&conn, &path)?;
                OpenCheck::Checked
            }
        };

        // WAL lets readers run beside the writer; with synchronous=FULL the WAL is synced on
        // every commit, so a commit that returned survives a crash or power loss.
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(classify)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StorageError::WalUnavailable { path, mode });
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(classify)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(classify)?;
        migrations::migrate(&mut conn)?;

        let readers = Readers {
            path: path.clone(),
            busy_timeout: config.busy_timeout,
            idle: Mutex::new(Vec::new()),
            max_idle: config.max_idle_readers,
            damaged: AtomicBool::new(false),
        };
        // Open one reader now so a problem shows at open, not at the first read.
        readers.put_back(readers.open()?);

        let counters = Arc::new(Counters::default());
        let (commands, queue) = mpsc::channel();
        let max_batch = config.max_batch.get();
        let writer_counters = Arc::clone(&counters);
        let (compaction, checkpoint) = (config.compaction, config.checkpoint);
        let writer = thread::Builder::new()
            .name("fieldsync-storage-writer".to_owned())
            .spawn(move || {
                // Started on the writer thread: reading the tallies scans the chunk table,
                // which should not hold up `open`.
                let maintenance = Maintenance::start(&mut conn, compaction, checkpoint);
                writer::run(conn, queue, max_batch, writer_counters, maintenance)
            })
            .map_err(|source| StorageError::Io {
                path: path.clone(),
                source,
            })?;

        Ok(Store {
            path,
            open_check,
            commands: Some(commands),
            writer: Some(writer),
            readers,
            counters,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How the file was found sound at open.
    pub fn open_check(&self) -> OpenCheck {
        self.open_check
    }

    // ---- documents ----

    /// Appends an incremental chunk (e.g. automerge `save_incremental` output) to a document.
    /// Completes with the chunk's key; appending the same bytes again is a no-op.
    pub fn append_changes(&self, doc_id: &str, data: Vec<u8>) -> Pending<ChunkKey> {
        let key = ChunkKey::of(&data);
        let op = WriteOp::AppendChunk {
            doc_id: doc_id.to_owned(),
            key,
            data,
        };
        self.submit(op, key)
    }

    /// Every chunk of a document, snapshots first, then incremental chunks in the order they
    /// were stored; `None` if the store holds nothing for it.
    pub fn load_doc(&self, doc_id: &str) -> Result<Option<Vec<Vec<u8>>>, StorageError> {
        let chunks = self.load_chunks(doc_id)?;
        Ok((!chunks.is_empty()).then(|| chunks.into_iter().map(|chunk| chunk.data).collect()))
    }

    /// Like [`Store::load_doc`], with each chunk's kind and key: what [`Store::compact`]
    /// needs to name the chunks a snapshot replaces.
    pub fn load_chunks(&self, doc_id: &str) -> Result<Vec<Chunk>, StorageError> {
        let rows = self.readers.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT kind, key, data FROM doc_chunks WHERE doc_id = ?1
                 ORDER BY kind = 'snapshot' DESC, id",
            )?;
            let rows = stmt.query_map([doc_id], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Vec<u8>>(1)?,
                    row.get::<_, Vec<u8>>(2)?,
                ))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        rows.into_iter()
            .map(|(kind, key, data)| {
                match (ChunkKind::from_sql(&kind), ChunkKey::from_slice(&key)) {
                    (Some(kind), Some(key)) => Ok(Chunk { kind, key, data }),
                    // The table's CHECK constraints rule this out; only damage gets here.
                    _ => Err(StorageError::Corrupt {
                        path: self.path.clone(),
                        detail: format!(
                            "chunk of {doc_id} has kind {kind:?} and a {}-byte key",
                            key.len()
                        ),
                    }),
                }
            })
            .collect()
    }

    /// Atomically stores `snapshot` and deletes the chunks it replaces (by key, as read with
    /// [`Store::load_chunks`] before the snapshot was made). Chunks stored since then are not
    /// in `replaced` and stay; a replaced key that is already gone is ignored. Completes with
    /// the snapshot's key.
    pub fn compact(
        &self,
        doc_id: &str,
        snapshot: Vec<u8>,
        replaced: Vec<ChunkKey>,
    ) -> Pending<ChunkKey> {
        let key = ChunkKey::of(&snapshot);
        let op = WriteOp::Compact {
            doc_id: doc_id.to_owned(),
            key,
            snapshot,
            replaced,
        };
        self.submit(op, key)
    }

    /// Atomically replaces every chunk stored for the document with `snapshot`. Writes are
    /// applied in the order they were submitted, so this is safe for a caller (the sync
    /// engine) whose snapshot holds everything it submitted before: chunks submitted after it
    /// are stored after it and stay.
    pub fn replace_with_snapshot(&self, doc_id: &str, snapshot: Vec<u8>) -> Pending<ChunkKey> {
        let key = ChunkKey::of(&snapshot);
        let op = WriteOp::ReplaceWithSnapshot {
            doc_id: doc_id.to_owned(),
            key,
            snapshot,
        };
        self.submit(op, key)
    }

    /// The ids of every document that has at least one chunk, sorted.
    pub fn doc_ids(&self) -> Result<Vec<String>, StorageError> {
        self.readers.read(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT DISTINCT doc_id FROM doc_chunks ORDER BY doc_id")?;
            let ids = stmt.query_map([], |row| row.get(0))?;
            ids.collect()
        })
    }

    // ---- what changed since a worker last looked (issue 17) ----

    /// The position of the document's last stored change in the sequence over every
    /// document (`doc_versions`, moved on in the transaction that stores the change); `None`
    /// if nothing was ever stored for it. Content read after this call holds at least every
    /// change up to it.
    pub fn doc_seq(&self, doc_id: &str) -> Result<Option<i64>, StorageError> {
        self.readers.read(|conn| {
            conn.prepare_cached("SELECT seq FROM doc_versions WHERE doc_id = ?1")?
                .query_row([doc_id], |row| row.get(0))
                .optional()
        })
    }

    /// The documents whose last change is after `seq`, with their position, in order:
    /// what a worker whose watermark is `seq` has not taken in yet. At most `limit` rows.
    pub fn docs_changed_since(
        &self,
        seq: i64,
        limit: usize,
    ) -> Result<Vec<(String, i64)>, StorageError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.readers.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT doc_id, seq FROM doc_versions WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![seq, limit], |row| Ok((row.get(0)?, row.get(1)?)))?;
            rows.collect()
        })
    }

    /// A worker's watermark: every document's changes up to this position were taken in by
    /// it (0: none yet).
    pub fn watermark(&self, worker: &str) -> Result<i64, StorageError> {
        self.readers.read(|conn| {
            conn.prepare_cached("SELECT seq FROM doc_watermarks WHERE worker = ?1")?
                .query_row([worker], |row| row.get(0))
                .optional()
                .map(Option::unwrap_or_default)
        })
    }

    /// Moves a worker's watermark up to `seq` (a lower value leaves it as it is). Written
    /// after every write submitted before it, so whatever the worker stored about the
    /// documents it took in is durable no later than the watermark that says so.
    pub fn put_watermark(&self, worker: &str, seq: i64) -> Pending<()> {
        let op = WriteOp::PutWatermark {
            worker: worker.to_owned(),
            seq,
        };
        self.submit(op, ())
    }

    /// Deletes a document's chunks, its summary and every sync state held for it.
    pub fn delete_doc(&self, doc_id: &str) -> Pending<()> {
        let op = WriteOp::DeleteDoc {
            doc_id: doc_id.to_owned(),
        };
        self.submit(op, ())
    }

    // ---- document summaries (0004) ----

    /// Every document summary stored, sorted by document id. A summary is what its owner
    /// keeps to know a document without loading it (the device's job list); storing an
    /// incremental chunk without a new summary deletes the old one, so each listed here
    /// describes its document as stored now.
    pub fn doc_summaries(&self) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        self.readers.read(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT doc_id, body FROM doc_summaries ORDER BY doc_id")?;
            let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
            rows.collect()
        })
    }

    /// One document's summary, if stored.
    pub fn doc_summary(&self, doc_id: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.readers.read(|conn| {
            conn.prepare_cached("SELECT body FROM doc_summaries WHERE doc_id = ?1")?
                .query_row([doc_id], |row| row.get(0))
                .optional()
        })
    }

    /// Stores (or replaces) a document's summary on its own. Only for a summary made from
    /// the document as it is stored with no write of it queued (a document just loaded, or
    /// a store opened before anything runs); a summary that goes with a change goes with its
    /// write ([`Store::perform_summarized`]).
    pub fn put_doc_summary(&self, doc_id: &str, body: Vec<u8>) -> Pending<()> {
        let op = WriteOp::PutSummary {
            doc_id: doc_id.to_owned(),
            body,
        };
        self.submit(op, ())
    }

    // ---- sync states ----

    /// Stores (or replaces) the automerge sync state held for a peer and a document.
    pub fn put_sync_state(
        &self,
        peer_storage_id: &str,
        doc_id: &str,
        state: Vec<u8>,
    ) -> Pending<()> {
        let op = WriteOp::PutSyncState {
            peer: peer_storage_id.to_owned(),
            doc_id: doc_id.to_owned(),
            state,
        };
        self.submit(op, ())
    }

    /// The sync state held for a peer and a document, if any.
    pub fn sync_state(
        &self,
        peer_storage_id: &str,
        doc_id: &str,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        self.readers.read(|conn| {
            conn.prepare_cached(
                "SELECT state FROM sync_states WHERE peer_storage_id = ?1 AND doc_id = ?2",
            )?
            .query_row([peer_storage_id, doc_id], |row| row.get(0))
            .optional()
        })
    }

    pub fn delete_sync_state(&self, peer_storage_id: &str, doc_id: &str) -> Pending<()> {
        let op = WriteOp::DeleteSyncState {
            peer: peer_storage_id.to_owned(),
            doc_id: doc_id.to_owned(),
        };
        self.submit(op, ())
    }

    // ---- small records ----

    /// Stores (or replaces) a small record under a namespace and key.
    pub fn put_meta(&self, namespace: &str, key: &str, value: Vec<u8>) -> Pending<()> {
        let op = WriteOp::PutMeta {
            namespace: namespace.to_owned(),
            key: key.to_owned(),
            value,
        };
        self.submit(op, ())
    }

    pub fn meta(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.readers.read(|conn| {
            conn.prepare_cached("SELECT value FROM meta WHERE namespace = ?1 AND key = ?2")?
                .query_row([namespace, key], |row| row.get(0))
                .optional()
        })
    }

    /// Every record of a namespace, sorted by key.
    pub fn meta_entries(&self, namespace: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        self.readers.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT key, value FROM meta WHERE namespace = ?1 ORDER BY key")?;
            let entries = stmt.query_map([namespace], |row| Ok((row.get(0)?, row.get(1)?)))?;
            entries.collect()
        })
    }

    pub fn delete_meta(&self, namespace: &str, key: &str) -> Pending<()> {
        let op = WriteOp::DeleteMeta {
            namespace: namespace.to_owned(),
            key: key.to_owned(),
        };
        self.submit(op, ())
    }

    // ---- versioned records ----

    /// Stores `record` as its `revision`: a new record has revision 1, and revision n is
    /// stored only over revision n - 1. Completes with [`StorageError::RevisionConflict`],
    /// storing nothing, when the stored revision is another (someone else wrote first).
    pub fn put_record(&self, record: Record) -> Pending<()> {
        self.submit(WriteOp::PutRecord(record), ())
    }

    /// One record, if stored.
    pub fn record(&self, kind: &str, id: &str) -> Result<Option<Record>, StorageError> {
        self.readers.read(|conn| {
            conn.prepare_cached(
                "SELECT kind, id, revision, lookup, open, body FROM records
                 WHERE kind = ?1 AND id = ?2",
            )?
            .query_row([kind, id], record_from_row)
            .optional()
        })
    }

    /// The records of a kind that pass `filter`, sorted by id.
    pub fn records(&self, kind: &str, filter: &RecordFilter) -> Result<Vec<Record>, StorageError> {
        self.readers.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT kind, id, revision, lookup, open, body FROM records
                 WHERE kind = ?1 AND (?2 IS NULL OR lookup = ?2) AND (?3 = 0 OR open = 1)
                 ORDER BY id",
            )?;
            let rows = stmt.query_map(
                rusqlite::params![kind, filter.lookup, filter.open_only],
                record_from_row,
            )?;
            rows.collect()
        })
    }

    // ---- lifecycle ----

    /// Completes once every write submitted before it has been committed or has failed.
    /// Graceful shutdown waits on it before telling anyone the node has stopped.
    pub fn flush(&self) -> Pending<()> {
        let (pending, completer) = pending();
        self.send(Command::Flush(completer));
        pending
    }

    /// Compacts, now, every document whose chunks are past [`StoreConfig::compaction`]'s
    /// threshold (the writer otherwise does it in its idle time), after the writes submitted
    /// before; completes with how many it compacted.
    pub fn compact_due(&self) -> Pending<usize> {
        let (pending, completer) = pending();
        self.send(Command::CompactDue(completer));
        pending
    }

    /// The write-ahead log's file beside the database (it may be absent).
    pub fn wal_path(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push("-wal");
        PathBuf::from(name)
    }

    /// Commits every queued write, then stops the writer thread and closes the database.
    /// Fails with [`StorageError::WriterGone`] if the writer thread had died.
    pub fn close(mut self) -> Result<(), StorageError> {
        self.stop_writer()
    }

    /// Runs `PRAGMA integrity_check` (the whole file, indexes included; slower than the
    /// `quick_check` done at open) and fails with [`StorageError::Corrupt`] naming every
    /// problem it found.
    pub fn integrity_check(&self) -> Result<(), StorageError> {
        let problems = self.readers.read(|conn| {
            let mut stmt = conn.prepare("PRAGMA integrity_check")?;
            let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
            rows.collect::<rusqlite::Result<Vec<String>>>()
        })?;
        if problems.len() == 1 && problems[0] == "ok" {
            return Ok(());
        }
        self.readers.damaged.store(true, Ordering::Relaxed);
        Err(StorageError::Corrupt {
            path: self.path.clone(),
            detail: problems.join("; "),
        })
    }

    /// The write counters since the store was opened.
    pub fn stats(&self) -> StoreStats {
        self.counters.snapshot()
    }

    pub(crate) fn submit_head_office(&self, write: crate::head_office::Write) -> Pending<()> {
        self.submit(WriteOp::HeadOffice(Box::new(write)), ())
    }

    pub(crate) fn read<T>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StorageError> {
        self.readers.read(query)
    }

    pub(crate) fn submit<T: Send + 'static>(&self, op: WriteOp, value: T) -> Pending<T> {
        let (pending, completer) = pending();
        let done: Done = Box::new(move |result| completer.complete(result.map(|()| value)));
        self.counters.submitted();
        if !self.send(Command::Write { op, done }) {
            self.counters.not_submitted();
        }
        pending
    }

    /// Queues a command. If the writer is gone the command is dropped here, and dropping its
    /// completer reports [`StorageError::WriterGone`] to the caller.
    fn send(&self, command: Command) -> bool {
        match &self.commands {
            Some(commands) => commands.send(command).is_ok(),
            None => false,
        }
    }

    fn stop_writer(&mut self) -> Result<(), StorageError> {
        // Closing the channel lets the writer drain what is queued, then return.
        drop(self.commands.take());
        let Some(writer) = self.writer.take() else {
            return Ok(());
        };
        // A callback on the writer thread may drop the last handle to the store; a thread
        // cannot join itself, and the writer ends on its own once the queue is drained.
        if writer.thread().id() == thread::current().id() {
            return Ok(());
        }
        writer.join().map_err(|_| StorageError::WriterGone)?;
        // Every write committed, the log checkpointed and the write connection closed: the
        // next open may skip its check if nothing touches the file until then. Only after a
        // checked open, and no read found damage: a file nobody checked is never vouched for.
        if self.open_check != OpenCheck::Off && !self.readers.damaged.load(Ordering::Relaxed) {
            clean_close::stamp(&self.path);
        }
        Ok(())
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.stop_writer();
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Read-only connections, reused between reads. WAL gives each read a consistent snapshot
/// without waiting for the writer.
#[derive(Debug)]
struct Readers {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
    /// A read found the file damaged: this store leaves no clean-close stamp.
    damaged: AtomicBool,
}

impl Readers {
    fn open(&self) -> Result<Connection, StorageError> {
        let classify = |error| StorageError::classify(error, &self.path);
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags).map_err(classify)?;
        conn.busy_timeout(self.busy_timeout).map_err(classify)?;
        Ok(conn)
    }

    fn read<T>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StorageError> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.open()?,
        };
        let result = query(&conn).map_err(|error| StorageError::classify(error, &self.path));
        if let Err(StorageError::Corrupt { .. }) = &result {
            self.damaged.store(true, Ordering::Relaxed);
        }
        self.put_back(conn);
        result
    }

    fn put_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
    }
}

fn record_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    Ok(Record {
        kind: row.get(0)?,
        id: row.get(1)?,
        revision: u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
        lookup: row.get(3)?,
        open: row.get(4)?,
        body: row.get(5)?,
    })
}

/// Runs `PRAGMA quick_check`, which answers one row "ok" or one row per problem found.
fn quick_check(conn: &Connection, path: &Path) -> Result<(), StorageError> {
    let classify = |error| StorageError::classify(error, path);
    let mut stmt = conn.prepare("PRAGMA quick_check").map_err(classify)?;
    let problems = stmt
        .query_map([], |row| row.get::<_, String>(0))
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(classify)?;
    if problems.len() == 1 && problems[0] == "ok" {
        return Ok(());
    }
    Err(StorageError::Corrupt {
        path: path.to_owned(),
        detail: problems.join("; "),
    })
}

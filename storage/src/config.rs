use std::num::NonZeroUsize;
use std::time::Duration;

/// Enough to take a burst of writes from many peers in one fsync, small enough that one
/// transaction does not hold the writer for long.
const DEFAULT_MAX_BATCH: NonZeroUsize = NonZeroUsize::new(1024).expect("1024 is not zero");

/// How a [`Store`](crate::Store) opens and runs its database.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Run `PRAGMA quick_check` on open and refuse a damaged file. It reads the whole
    /// database, so a very large store may turn it off and check out of band.
    pub quick_check: bool,
    /// How long a statement waits for a lock held by another connection (another process,
    /// a checkpoint) before it fails with `SQLITE_BUSY`.
    pub busy_timeout: Duration,
    /// The most writes the writer groups into one transaction.
    pub max_batch: NonZeroUsize,
    /// Read-only connections kept open between reads. Reads that find none free open
    /// another, so this bounds idle connections, not concurrency.
    pub max_idle_readers: usize,
    /// When the writer compacts a document's chunks into one snapshot, in its idle time;
    /// `None`: never (the sync engine still compacts what it holds in memory).
    pub compaction: Option<Compaction>,
    /// When the writer checkpoints the write-ahead log; `None`: SQLite's automatic
    /// checkpoints only (every 1,000 pages, and the log file never shrinks).
    pub checkpoint: Option<Checkpoint>,
}

/// The threshold past which a document's stored chunks are compacted (issue 19).
///
/// Loading a document costs one snapshot inflation plus a price per change stored beside it,
/// and compacting costs a load and a save: a few dozen chunks between compactions keep the
/// load close to a snapshot's while the writer spends little on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compaction {
    /// Compact a document that has more chunks than this (snapshot included).
    pub max_chunks: usize,
    /// Compact a document whose incremental chunks hold more bytes than this, however few.
    pub max_incremental_bytes: u64,
}

impl Default for Compaction {
    fn default() -> Self {
        Self {
            max_chunks: 16,
            max_incremental_bytes: 256 * 1024,
        }
    }
}

/// How the write-ahead log is kept bounded (issue 19).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// After a commit that leaves at least this many pages in the log, the writer runs a
    /// PASSIVE checkpoint (copies what no reader still needs into the database; never waits
    /// for a reader). The log file is cut back to this size once a checkpoint has emptied it.
    pub after_pages: u32,
}

impl Default for Checkpoint {
    fn default() -> Self {
        Self { after_pages: 256 }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            quick_check: true,
            busy_timeout: Duration::from_secs(5),
            max_batch: DEFAULT_MAX_BATCH,
            max_idle_readers: 4,
            compaction: Some(Compaction::default()),
            checkpoint: Some(Checkpoint::default()),
        }
    }
}

impl StoreConfig {
    /// The store as it ran before issue 19: no compaction by the writer, SQLite's own
    /// checkpoints. Only the load figures use it, as their baseline.
    pub fn without_maintenance() -> Self {
        Self {
            compaction: None,
            checkpoint: None,
            ..Self::default()
        }
    }
}

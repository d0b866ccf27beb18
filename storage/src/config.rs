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
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            quick_check: true,
            busy_timeout: Duration::from_secs(5),
            max_batch: DEFAULT_MAX_BATCH,
            max_idle_readers: 4,
        }
    }
}

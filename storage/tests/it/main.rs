//! Tests of the store against real SQLite files in temporary folders.

mod documents;
mod durability;
mod group_commit;
mod maintenance;
mod open;
mod records;
mod summaries;

use std::path::{Path, PathBuf};
use std::time::Duration;

use fieldsync_storage::{Store, StoreConfig};
use rusqlite::Connection;
use tempfile::TempDir;

/// A document id in automerge-repo's form (bs58check of 16 bytes).
const DOC: &str = "2j9knpCseyhnK8izDmLpGP5WMdZQ";
const OTHER_DOC: &str = "4NMNnkMhL8jXrdJ9jamS58PAVdXu";

/// A fresh folder and the path of a database file inside it.
fn temp_db() -> anyhow::Result<(TempDir, PathBuf)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("store.sqlite");
    Ok((dir, path))
}

fn open(path: &Path) -> anyhow::Result<Store> {
    Ok(Store::open(path, StoreConfig::default())?)
}

/// A raw connection that holds SQLite's write lock until it is dropped, so the store's
/// writer blocks in `BEGIN IMMEDIATE`: a way to stall or fail the writer on purpose.
struct WriteLock(Connection);

impl WriteLock {
    fn take(path: &Path) -> anyhow::Result<Self> {
        let conn = Connection::open(path)?;
        conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(Self(conn))
    }

    fn release(self) -> anyhow::Result<()> {
        self.0.execute_batch("ROLLBACK")?;
        Ok(())
    }
}

fn config_with_busy_timeout(busy_timeout: Duration) -> StoreConfig {
    StoreConfig {
        busy_timeout,
        ..StoreConfig::default()
    }
}

fn open_with(path: &Path, config: StoreConfig) -> anyhow::Result<Store> {
    Ok(Store::open(path, config)?)
}

use std::path::PathBuf;
use std::sync::Arc;

/// Everything that can go wrong in the storage layer.
///
/// A write that completes with any of these is **not** stored.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// SQLite refused a statement (a constraint, a full disk, a lock held too long, ...).
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),

    /// The transaction that held this write could not be started or committed, so none of
    /// the writes grouped into it were stored. Shared by every write of that transaction.
    #[error("the write transaction failed and none of its writes were stored: {0}")]
    BatchFailed(Arc<rusqlite::Error>),

    /// The database was written by a newer version of this program; opening it with older
    /// code could misread or damage it.
    #[error(
        "database schema version {found} is newer than this program supports ({supported}); \
         refusing to open it"
    )]
    NewerSchema { found: i64, supported: i64 },

    /// A schema migration step failed; its transaction was rolled back, so the file is still
    /// at the previous step.
    #[error("schema migration {step} failed: {source}")]
    Migration {
        step: &'static str,
        #[source]
        source: rusqlite::Error,
    },

    /// The file exists but is not a SQLite database (wrong file, or its header is destroyed).
    #[error("{} is not a SQLite database", path.display())]
    NotADatabase { path: PathBuf },

    /// The file is a SQLite database whose content is damaged.
    #[error("{} is corrupt: {detail}", path.display())]
    Corrupt { path: PathBuf, detail: String },

    /// SQLite would not put the file in WAL mode (it answered with another journal mode), so
    /// neither concurrent reads nor the durability promise would hold.
    #[error("{} cannot use WAL journal mode (SQLite kept {mode:?})", path.display())]
    WalUnavailable { path: PathBuf, mode: String },

    /// A versioned record was written over a revision other than the one the writer read:
    /// someone else changed it first. Nothing was stored; read it again and retry.
    #[error("record {kind}/{id} was changed by someone else (expected revision {expected})")]
    RevisionConflict {
        kind: String,
        id: String,
        expected: u64,
    },

    /// The writer thread has stopped, so the write was not (and will not be) stored.
    #[error("the storage writer thread has stopped; the write was not stored")]
    WriterGone,

    /// A file system operation around the database failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl StorageError {
    /// Turns SQLite's "not a database" and "corrupt" codes into the narrow variants that name
    /// the file; any other error stays a plain [`StorageError::Sqlite`].
    pub(crate) fn classify(error: rusqlite::Error, path: &std::path::Path) -> Self {
        match error.sqlite_error_code() {
            Some(rusqlite::ErrorCode::NotADatabase) => Self::NotADatabase {
                path: path.to_owned(),
            },
            Some(rusqlite::ErrorCode::DatabaseCorrupt) => Self::Corrupt {
                path: path.to_owned(),
                detail: error.to_string(),
            },
            _ => Self::Sqlite(error),
        }
    }
}

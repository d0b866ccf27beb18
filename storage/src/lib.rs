//! Durable storage of fieldsync, on SQLite: the only crate of the project that knows
//! rusqlite.
//!
//! Every tier uses it: the branch edge server, head office and the technician device (through
//! the client SDK). It keeps what the sync engine needs, in the style of automerge-repo's
//! storage: per document, incremental change chunks and compacted snapshots; the automerge
//! sync state held for each (peer, document); small records by namespace; and versioned
//! records written by compare-and-set (the service desk's own records); and head office's
//! archive tables (verified reports, reports set aside, complaints; migration 0003).
//!
//! # The durability promise
//!
//! A node must never tell a peer it holds a change (announce heads that include it) unless
//! that change would survive the node being killed with SIGKILL, or the machine losing power,
//! right after. So:
//!
//! - the database runs in WAL mode with `synchronous=FULL`: a COMMIT returns only after the
//!   WAL has been synced to disk;
//! - a write is completed `Ok` by the writer thread only after the COMMIT of the transaction
//!   holding it has returned; a write whose transaction failed is completed with an error,
//!   never taken as done. The sync engine announces heads only after `Ok`.
//!
//! # Shape
//!
//! One writer thread owns the write connection and does **group commit**: it takes every
//! write queued (up to [`StoreConfig::max_batch`]), applies them in one transaction and pays
//! one fsync for all of them. Reads go to separate read-only connections and, thanks to WAL,
//! do not wait for the writer.
//!
//! The crate depends on no async runtime. Each write returns a [`Pending`], which a caller
//! can block on ([`Pending::wait`]), `.await` (it is a `Future`, woken from the writer
//! thread), or turn into a callback ([`Pending::on_complete`]). Reads are short blocking
//! calls; async callers run them on a blocking pool.
//!
//! The schema is a list of numbered SQL files (`storage/migrations/NNNN_name.sql`) tracked in
//! `PRAGMA user_version`; a file from a newer program is refused rather than misread.

mod chunk;
mod clean_close;
mod config;
mod engine_writes;
mod error;
mod head_office;
mod maintenance;
mod migrations;
mod pending;
mod record;
mod stats;
mod store;
mod writer;

pub use chunk::{Chunk, ChunkKey, ChunkKind};
pub use config::{Checkpoint, Compaction, StoreConfig};
pub use error::StorageError;
pub use head_office::{
    ArchivedBrief, AsideRow, AsideStatus, ComplaintRow, ReportQuery, ReportRow, STATS_COLUMNS,
    StatsColumns, StatsRow, StatsValues, month_stats_query,
};
pub use migrations::SCHEMA_VERSION;
pub use pending::Pending;
pub use record::{Record, RecordFilter};
pub use stats::StoreStats;
pub use store::{OpenCheck, Store};

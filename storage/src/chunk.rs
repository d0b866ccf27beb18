//! Document chunks, in the style of automerge-repo's storage: per document, incremental
//! change chunks appended as changes arrive, and snapshots that replace the chunks they cover.

use std::fmt;

use sha2::{Digest, Sha256};

/// The key of a chunk within its document: the SHA-256 of the chunk's bytes.
///
/// Content addressing makes appends idempotent (storing the same bytes twice keeps one row)
/// and lets the sync engine name the chunks a snapshot covers without asking the store.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkKey([u8; 32]);

impl ChunkKey {
    /// The key of a chunk holding `data`.
    pub fn of(data: &[u8]) -> Self {
        Self(Sha256::digest(data).into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub(crate) fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }
}

impl fmt::Display for ChunkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ChunkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkKey({self})")
    }
}

/// What a chunk holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChunkKind {
    /// Some changes, e.g. from automerge `save_incremental` or concatenated `Change::raw_bytes`.
    Incremental,
    /// A whole document as of some heads, from automerge `save`.
    Snapshot,
}

impl ChunkKind {
    pub(crate) fn as_sql(self) -> &'static str {
        match self {
            Self::Incremental => "incremental",
            Self::Snapshot => "snapshot",
        }
    }

    pub(crate) fn from_sql(text: &str) -> Option<Self> {
        match text {
            "incremental" => Some(Self::Incremental),
            "snapshot" => Some(Self::Snapshot),
            _ => None,
        }
    }
}

/// One stored chunk of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub kind: ChunkKind,
    pub key: ChunkKey,
    pub data: Vec<u8>,
}

//! Versioned records: what a node keeps that is not an automerge document (the service
//! desk's requests, complaints, requisitions and tools). The body is the caller's bytes
//! (JSON at the desk); the store adds a revision for compare-and-set writes, an optional
//! lookup key and an "open" flag, both indexed.

/// One stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// What sort of record (`"service_request"`, `"complaint"`, ...).
    pub kind: String,
    pub id: String,
    /// 1 for a new record; each write stores the next revision.
    pub revision: u64,
    /// A secondary key to find records by (e.g. a product serial).
    pub lookup: Option<String>,
    /// Whether the record still needs attention; lists of open records use an index.
    pub open: bool,
    pub body: Vec<u8>,
}

/// Which records of a kind to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordFilter {
    /// Only records with this lookup key.
    pub lookup: Option<String>,
    /// Only open records.
    pub open_only: bool,
}

/// The error value a conditional write carries through the writer (see `writer::apply`).
#[derive(Debug)]
pub(crate) struct RevisionConflict;

impl std::fmt::Display for RevisionConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the record changed since it was read")
    }
}

impl std::error::Error for RevisionConflict {}

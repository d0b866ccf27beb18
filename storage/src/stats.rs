//! Counters of the writer, so that metrics and benchmarks can see group commit at work.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the store's write counters since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Write transactions committed.
    pub transactions: u64,
    /// Write transactions that could not begin or commit (all their writes failed).
    pub failed_transactions: u64,
    /// Writes committed.
    pub writes: u64,
    /// Writes completed with an error (alone, or with their whole transaction).
    pub failed_writes: u64,
    /// The most writes (committed or not) grouped into one transaction.
    pub largest_batch: u64,
    /// Writes submitted and not completed yet.
    pub queued: u64,
    /// Documents compacted by the writer in its idle time (issue 19).
    pub compactions: u64,
    /// Chunks those compactions replaced (snapshots included).
    pub chunks_compacted: u64,
    /// Compactions not done: a damaged document, or one holding orphaned changes.
    pub compactions_skipped: u64,
    /// Checkpoints of the write-ahead log run by the writer.
    pub checkpoints: u64,
}

impl StoreStats {
    /// Committed writes per committed transaction: how well group commit is working.
    pub fn writes_per_transaction(&self) -> f64 {
        if self.transactions == 0 {
            0.0
        } else {
            self.writes as f64 / self.transactions as f64
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    transactions: AtomicU64,
    failed_transactions: AtomicU64,
    writes: AtomicU64,
    failed_writes: AtomicU64,
    largest_batch: AtomicU64,
    queued: AtomicU64,
    compactions: AtomicU64,
    chunks_compacted: AtomicU64,
    compactions_skipped: AtomicU64,
    checkpoints: AtomicU64,
}

impl Counters {
    pub(crate) fn submitted(&self) {
        self.queued.fetch_add(1, Ordering::Relaxed);
    }

    /// A write that never reached the writer.
    pub(crate) fn not_submitted(&self) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn committed(&self, batch: usize, committed: usize) {
        let (batch, committed) = (batch as u64, committed as u64);
        self.transactions.fetch_add(1, Ordering::Relaxed);
        self.writes.fetch_add(committed, Ordering::Relaxed);
        self.failed_writes
            .fetch_add(batch - committed, Ordering::Relaxed);
        self.finished(batch);
    }

    pub(crate) fn batch_failed(&self, batch: usize) {
        let batch = batch as u64;
        self.failed_transactions.fetch_add(1, Ordering::Relaxed);
        self.failed_writes.fetch_add(batch, Ordering::Relaxed);
        self.finished(batch);
    }

    pub(crate) fn compacted(&self, chunks: usize) {
        self.compactions.fetch_add(1, Ordering::Relaxed);
        self.chunks_compacted
            .fetch_add(chunks as u64, Ordering::Relaxed);
    }

    pub(crate) fn compaction_skipped(&self) {
        self.compactions_skipped.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn checkpointed(&self) {
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
    }

    fn finished(&self, batch: u64) {
        self.largest_batch.fetch_max(batch, Ordering::Relaxed);
        self.queued.fetch_sub(batch, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> StoreStats {
        StoreStats {
            transactions: self.transactions.load(Ordering::Relaxed),
            failed_transactions: self.failed_transactions.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            failed_writes: self.failed_writes.load(Ordering::Relaxed),
            largest_batch: self.largest_batch.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed),
            compactions: self.compactions.load(Ordering::Relaxed),
            chunks_compacted: self.chunks_compacted.load(Ordering::Relaxed),
            compactions_skipped: self.compactions_skipped.load(Ordering::Relaxed),
            checkpoints: self.checkpoints.load(Ordering::Relaxed),
        }
    }
}

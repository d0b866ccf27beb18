//! Shows group commit at work, and that acknowledged writes survive a reopen.
//!
//! `cargo run --release -p fieldsync-storage --example group_commit -- [threads] [writes]`
//!
//! First one writer waits for each write before the next (one fsync per write), then
//! `threads` writers submit `writes` each without waiting (the writer groups them). Both
//! print the store's counters; then the file is reopened and every acknowledged chunk counted.

use std::sync::Arc;
use std::thread;
use std::time::Instant;

use fieldsync_storage::{Store, StoreConfig};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(8);
    let writes: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(250);

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.sqlite");

    let store = Store::open(&path, StoreConfig::default())?;
    let start = Instant::now();
    for i in 0..writes {
        store.append_changes("sequential", chunk(0, i)).wait()?;
    }
    report("one at a time", writes, start, &store);
    store.close()?;

    let store = Arc::new(Store::open(&path, StoreConfig::default())?);
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let store = Arc::clone(&store);
            thread::spawn(move || -> anyhow::Result<()> {
                let doc = format!("doc-{t}");
                let pending: Vec<_> = (0..writes)
                    .map(|i| store.append_changes(&doc, chunk(t, i)))
                    .collect();
                for write in pending {
                    write.wait()?;
                }
                Ok(())
            })
        })
        .collect();
    for worker in workers {
        worker
            .join()
            .map_err(|_| anyhow::anyhow!("a worker panicked"))??;
    }
    report("concurrent", threads * writes, start, &store);
    drop(store);

    let store = Store::open(&path, StoreConfig::default())?;
    let mut stored = 0;
    for doc in store.doc_ids()? {
        stored += store.load_chunks(&doc)?.len();
    }
    println!(
        "after reopening: {stored} chunks stored, {} acknowledged",
        writes + threads * writes
    );
    anyhow::ensure!(
        stored == writes + threads * writes,
        "acknowledged writes missing"
    );
    Ok(())
}

/// A distinct chunk of a typical small change batch's size.
fn chunk(thread: usize, index: usize) -> Vec<u8> {
    let mut data = format!("thread {thread} change {index} ").into_bytes();
    data.resize(200, b'.');
    data
}

fn report(label: &str, writes: usize, start: Instant, store: &Store) {
    let elapsed = start.elapsed();
    let stats = store.stats();
    println!(
        "{label:>14}: {writes} writes in {elapsed:.2?} ({:.0} writes/s), {} transactions, \
         {:.1} writes per transaction, largest batch {}",
        writes as f64 / elapsed.as_secs_f64(),
        stats.transactions,
        stats.writes_per_transaction(),
        stats.largest_batch,
    );
}

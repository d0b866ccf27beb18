//! Issue 19: the writer compacts documents whose chunks piled up, and keeps the write-ahead
//! log bounded.

use std::collections::BTreeSet;
use std::path::Path;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ChangeHash, ROOT};
use fieldsync_storage::{Checkpoint, ChunkKind, Compaction, Store, StoreConfig};

use crate::{DOC, OTHER_DOC, temp_db};

/// Stores `n` chunks of one change each (the first holds the document's creation), as the
/// sync engine appends them, and returns the document as written.
fn append_changes(
    store: &Store,
    doc_id: &str,
    n: usize,
    doc: &mut AutoCommit,
) -> anyhow::Result<()> {
    for i in 0..n {
        let heads = doc.get_heads();
        doc.put(ROOT, format!("field {}", i % 5), format!("value {i}"))?;
        doc.commit();
        store
            .append_changes(doc_id, doc.save_after(&heads))
            .wait()?;
    }
    Ok(())
}

fn hashes(doc: &mut AutoCommit) -> BTreeSet<ChangeHash> {
    doc.get_changes(&[]).iter().map(|c| c.hash()).collect()
}

/// The stored document: heads equal to `expected`'s and every change of it present.
fn assert_holds(store: &Store, doc_id: &str, expected: &mut AutoCommit) -> anyhow::Result<()> {
    let chunks = store.load_doc(doc_id)?.expect("stored");
    let loaded = fieldsync_shared::stored::load(&chunks)?;
    let mut loaded = AutoCommit::load(&loaded.save())?;
    assert_eq!(loaded.get_heads(), expected.get_heads());
    assert_eq!(hashes(&mut loaded), hashes(expected));
    Ok(())
}

fn with_compaction(max_chunks: usize) -> StoreConfig {
    StoreConfig {
        compaction: Some(Compaction {
            max_chunks,
            ..Compaction::default()
        }),
        ..StoreConfig::default()
    }
}

#[test]
fn compaction_keeps_every_change_and_bounds_the_chunk_count() -> anyhow::Result<()> {
    let (_dir, path) = temp_db()?;
    let store = Store::open(&path, with_compaction(8))?;
    let (mut doc, mut other) = (AutoCommit::new(), AutoCommit::new());
    for _ in 0..10 {
        append_changes(&store, DOC, 25, &mut doc)?;
        append_changes(&store, OTHER_DOC, 3, &mut other)?;
        store.compact_due().wait()?;
        // Past the threshold a document is one snapshot again; below it, left alone.
        assert!(store.load_chunks(DOC)?.len() <= 8);
        assert_holds(&store, DOC, &mut doc)?;
    }
    // Compacted in the writer's idle time between appends, or by `compact_due`: either way
    // a snapshot and fewer chunks than the threshold beside it.
    let chunks = store.load_chunks(DOC)?;
    assert!(chunks.len() <= 8);
    assert_eq!(chunks[0].kind, ChunkKind::Snapshot);
    assert_holds(&store, OTHER_DOC, &mut other)?;
    assert!(store.stats().compactions >= 10, "{:?}", store.stats());
    assert_eq!(store.stats().compactions_skipped, 0);
    Ok(())
}

#[test]
fn chunks_stored_before_the_store_opened_are_compacted_too() -> anyhow::Result<()> {
    let (_dir, path) = temp_db()?;
    let mut doc = AutoCommit::new();
    {
        let store = Store::open(&path, StoreConfig::without_maintenance())?;
        append_changes(&store, DOC, 40, &mut doc)?;
        assert_eq!(store.compact_due().wait()?, 0);
        assert_eq!(store.load_chunks(DOC)?.len(), 40);
    }
    let store = Store::open(&path, with_compaction(16))?;
    // (The writer may get to it in its idle time before `compact_due` arrives.)
    store.compact_due().wait()?;
    assert_eq!(store.stats().compactions, 1);
    assert_eq!(store.load_chunks(DOC)?.len(), 1);
    assert_holds(&store, DOC, &mut doc)
}

#[test]
fn many_small_chunks_past_the_byte_threshold_are_compacted() -> anyhow::Result<()> {
    let (_dir, path) = temp_db()?;
    let config = StoreConfig {
        compaction: Some(Compaction {
            max_chunks: 1000,
            max_incremental_bytes: 2048,
        }),
        ..StoreConfig::default()
    };
    let store = Store::open(&path, config)?;
    let mut doc = AutoCommit::new();
    append_changes(&store, DOC, 60, &mut doc)?;
    store.compact_due().wait()?;
    assert!(store.load_chunks(DOC)?.len() < 60);
    assert_holds(&store, DOC, &mut doc)
}

#[test]
fn a_document_that_cannot_be_compacted_is_left_as_it_is() -> anyhow::Result<()> {
    let (_dir, path) = temp_db()?;
    let store = Store::open(&path, with_compaction(2))?;
    // Orphans: changes whose dependency is stored nowhere are the engine's to drop.
    let mut doc = AutoCommit::new();
    let mut changes = Vec::new();
    for i in 0..5 {
        doc.put(ROOT, "k", i)?;
        doc.commit();
    }
    for change in doc.get_changes(&[]) {
        changes.push(change.raw_bytes().to_vec());
    }
    for change in changes.iter().skip(1) {
        store.append_changes(DOC, change.clone()).wait()?;
    }
    // And bytes that are no document at all.
    for junk in [b"junk 1".as_slice(), b"junk 2", b"junk 3"] {
        store.append_changes(OTHER_DOC, junk.to_vec()).wait()?;
    }
    assert_eq!(store.compact_due().wait()?, 0);
    assert_eq!(store.load_chunks(DOC)?.len(), 4);
    assert_eq!(store.load_chunks(OTHER_DOC)?.len(), 3);
    assert_eq!(store.stats().compactions_skipped, 2);
    Ok(())
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[test]
fn the_write_ahead_log_stays_bounded_during_a_long_edit_stream() -> anyhow::Result<()> {
    let (_dir, path) = temp_db()?;
    let after_pages = 64;
    let config = StoreConfig {
        checkpoint: Some(Checkpoint { after_pages }),
        compaction: None,
        ..StoreConfig::default()
    };
    let store = Store::open(&path, config)?;
    let wal = store.wal_path();
    // 1,200 transactions of a 3 KB chunk each: some 10 MB through the log, which SQLite's
    // own checkpoints would let grow to 4 MB and leave there.
    let bound = u64::from(after_pages) * 4096 * 2;
    let mut largest = 0;
    for i in 0..1200u32 {
        let mut chunk = vec![0u8; 3000];
        chunk[..4].copy_from_slice(&i.to_le_bytes());
        let doc = if i % 2 == 0 { DOC } else { OTHER_DOC };
        store.append_changes(doc, chunk).wait()?;
        largest = largest.max(file_len(&wal));
    }
    assert!(
        largest <= bound,
        "the log reached {largest} bytes (bound {bound})"
    );
    assert!(store.stats().checkpoints > 10, "{:?}", store.stats());
    assert_eq!(store.load_chunks(DOC)?.len(), 600);
    store.close()?;
    // A store closed cleanly leaves no log to replay.
    assert_eq!(file_len(&wal), 0);
    let store = Store::open(&path, StoreConfig::default())?;
    assert_eq!(store.load_chunks(OTHER_DOC)?.len(), 600);
    Ok(())
}

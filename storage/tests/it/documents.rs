use fieldsync_storage::{ChunkKey, ChunkKind};

use crate::{DOC, OTHER_DOC, open, temp_db};

#[test]
fn chunks_load_in_the_order_they_were_appended() -> anyhow::Result<()> {
    let (_dir, path) = temp_db()?;
    let store = open(&path)?;
    assert_eq!(store.load_doc(DOC)?, None);

    let first = store.append_changes(DOC, b"first".to_vec()).wait()?;
    let second = store.append_changes(DOC, b"second".to_vec()).wait()?;
    assert_eq!(first, ChunkKey::of(b"first"));
    assert_ne!(first, second);

    assert_eq!(
        store.load_doc(DOC)?,
        Some(vec![b"first".to_vec(), b"second".to_vec()])
    );
    let chunks = store.load_chunks(DOC)?;
    assert!(
        chunks
            .iter()
            .all(|chunk| chunk.kind == ChunkKind::Incremental)
    );
    assert_eq!(
        chunks.iter().map(|chunk| chunk.key).collect::<Vec<_>>(),
        [first, second]
    );
    assert_eq!(store.load_doc(OTHER_DOC)?, None);
    Ok(())
}

#[test]
fn appending_the_same_bytes_again_keeps_one_chunk() -> anyhow::Result<()> {
    let (_dir, path) = temp_db()?;
    let store = open(&path)?;
    let key = store.append_changes(DOC, b"retried".to_vec()).wait()?;
    assert_eq!(store.append_changes(DOC, b"retried".to_vec()).wait()?, key);
    assert_eq!(store.load_doc(DOC)?, Some(vec![b"retried".to_vec()]));
    Ok(())
}

#[test]
fn compaction_replaces_only_the_chunks_it_covers() -> anyhow::Result<()> {
    let (_dir, path) = temp_db()?;
    let store = open(&path)?;
    store.append_changes(DOC, b"change 1".to_vec()).wait()?;
    store.append_changes(DOC, b"change 2".to_vec()).wait()?;

    // The compactor reads the document and builds a snapshot of what it read...
    let covered: Vec<ChunkKey> = store.load_chunks(DOC)?.iter().map(|c| c.key).collect();
    // ...while a peer's change is stored.
    store.append_changes(DOC, b"change 3".to_vec()).wait()?;
    let snapshot = store
        .compact(DOC, b"snapshot of 1+2".to_vec(), covered)
        .wait()?;

    assert_eq!(snapshot, ChunkKey::of(b"snapshot of 1+2"));
    let chunks = store.load_chunks(DOC)?;
    assert_eq!(chunks.len(), 2);
    assert_eq!(chunks[0].kind, ChunkKind::Snapshot);
    assert_eq!(chunks[0].data, b"snapshot of 1+2");
    assert_eq!(chunks[1].kind, ChunkKind::Incremental);
    assert_eq!(chunks[1].data, b"change 3");

    // A second compaction replaces the earlier snapshot too, and ignores keys already gone.
    let mut covered: Vec<ChunkKey> = chunks.iter().map(|c| c.key).collect();
    covered.push(ChunkKey::of(b"change 1"));
    store
        .compact(DOC, b"snapshot of 1+2+3".to_vec(), covered)
        .wait()?;
    assert_eq!(
        store.load_doc(DOC)?,
        Some(vec![b"snapshot of 1+2+3".to_vec()])
    );
    Ok(())
}

#[test]
fn doc_ids_list_stored_documents_and_delete_doc_removes_one() -> anyhow::Result<()> {
    let (_dir, path) = temp_db()?;
    let store = open(&path)?;
    store.append_changes(OTHER_DOC, b"a".to_vec()).wait()?;
    store.append_changes(DOC, b"b".to_vec()).wait()?;
    store.append_changes(DOC, b"c".to_vec()).wait()?;
    store
        .put_sync_state("peer", DOC, b"state".to_vec())
        .wait()?;
    store
        .put_sync_state("peer", OTHER_DOC, b"other".to_vec())
        .wait()?;

    let mut expected = vec![DOC.to_owned(), OTHER_DOC.to_owned()];
    expected.sort();
    assert_eq!(store.doc_ids()?, expected);

    store.delete_doc(DOC).wait()?;
    assert_eq!(store.doc_ids()?, [OTHER_DOC]);
    assert_eq!(store.load_doc(DOC)?, None);
    // A deleted document's sync states are useless and go with it; others stay.
    assert_eq!(store.sync_state("peer", DOC)?, None);
    assert_eq!(
        store.sync_state("peer", OTHER_DOC)?,
        Some(b"other".to_vec())
    );
    Ok(())
}

#[test]
fn replace_with_snapshot_covers_what_came_before_and_keeps_what_came_after() -> anyhow::Result<()> {
    let (_dir, path) = temp_db()?;
    let store = open(&path)?;
    drop(store.append_changes(DOC, b"a".to_vec()));
    drop(store.append_changes(DOC, b"b".to_vec()));
    drop(store.append_changes(OTHER_DOC, b"other".to_vec()));
    // Submitted in this order, with no wait between: the writer keeps the order.
    let snapshot = store.replace_with_snapshot(DOC, b"snap(a,b)".to_vec());
    let after = store.append_changes(DOC, b"c".to_vec());
    snapshot.wait()?;
    after.wait()?;
    assert_eq!(
        store.load_doc(DOC)?,
        Some(vec![b"snap(a,b)".to_vec(), b"c".to_vec()])
    );
    assert_eq!(store.load_doc(OTHER_DOC)?, Some(vec![b"other".to_vec()]));
    Ok(())
}

/// Issue 17: each document's last change has a position in one sequence, moved on in the
/// transaction that stores the change, so a worker finds what changed after its watermark
/// without reading every document.
#[test]
fn a_stored_change_moves_the_document_on_in_the_sequence() -> anyhow::Result<()> {
    let (_dir, path) = temp_db()?;
    let store = open(&path)?;
    assert_eq!(store.doc_seq(DOC)?, None);
    store.append_changes(DOC, b"one".to_vec()).wait()?;
    store.append_changes(OTHER_DOC, b"two".to_vec()).wait()?;
    let (doc, other) = (store.doc_seq(DOC)?.unwrap_or(0), store.doc_seq(OTHER_DOC)?);
    assert!(Some(doc) < other, "{doc} then {other:?}");
    assert_eq!(
        store.docs_changed_since(0, 10)?,
        [
            (DOC.to_owned(), doc),
            (OTHER_DOC.to_owned(), other.unwrap_or(0))
        ]
    );

    // The same bytes again store nothing, and a snapshot holds nothing new: no move.
    store.append_changes(DOC, b"one".to_vec()).wait()?;
    store
        .replace_with_snapshot(OTHER_DOC, b"snap".to_vec())
        .wait()?;
    assert_eq!(store.doc_seq(DOC)?, Some(doc));
    assert_eq!(store.doc_seq(OTHER_DOC)?, other);

    // A new change moves the document past every other.
    store.append_changes(DOC, b"three".to_vec()).wait()?;
    let moved = store.doc_seq(DOC)?.unwrap_or(0);
    assert!(Some(moved) > other);
    assert_eq!(
        store.docs_changed_since(other.unwrap_or(0), 10)?,
        [(DOC.to_owned(), moved)]
    );
    assert_eq!(store.docs_changed_since(moved, 10)?, []);
    // It holds across a reopen.
    drop(store);
    let store = open(&path)?;
    assert_eq!(store.doc_seq(DOC)?, Some(moved));
    Ok(())
}

#[test]
fn a_watermark_only_moves_up() -> anyhow::Result<()> {
    let (_dir, path) = temp_db()?;
    let store = open(&path)?;
    assert_eq!(store.watermark("signer")?, 0);
    store.put_watermark("signer", 7).wait()?;
    store.put_watermark("signer", 3).wait()?;
    store.put_watermark("approvals", 2).wait()?;
    assert_eq!(store.watermark("signer")?, 7);
    assert_eq!(store.watermark("approvals")?, 2);
    Ok(())
}

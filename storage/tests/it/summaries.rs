//! Issue 17: document summaries (migration 0004). A summary goes in with the write that
//! changes its document; a chunk stored without one deletes it; compaction keeps it.

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ROOT};
use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::sync::WriteOp;
use fieldsync_storage::{Compaction, Store, StoreConfig};

use crate::{DOC, OTHER_DOC, open, temp_db};

fn doc_id(s: &str) -> anyhow::Result<DocumentId> {
    Ok(s.parse()?)
}

/// Performs one engine write with a summary and waits for its outcome.
fn perform(store: &Store, op: WriteOp, summary: Option<&str>) -> anyhow::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    store.perform_summarized(op, summary.map(|s| s.as_bytes().to_vec()), move |r| {
        let _ = tx.send(r);
    });
    rx.recv()?.map_err(anyhow::Error::msg)
}

fn append(doc: &str, bytes: &[u8]) -> anyhow::Result<WriteOp> {
    Ok(WriteOp::AppendChanges {
        doc: doc_id(doc)?,
        bytes: bytes.to_vec(),
    })
}

fn summary(store: &Store, doc: &str) -> anyhow::Result<Option<String>> {
    Ok(store
        .doc_summary(doc)?
        .map(|b| String::from_utf8_lossy(&b).into_owned()))
}

#[test]
fn a_summary_goes_in_with_its_write_and_a_chunk_without_one_deletes_it() -> anyhow::Result<()> {
    let (_dir, path) = temp_db()?;
    let store = open(&path)?;
    perform(&store, append(DOC, b"change 1")?, Some("after 1"))?;
    perform(&store, append(OTHER_DOC, b"other")?, Some("other 1"))?;
    assert_eq!(summary(&store, DOC)?.as_deref(), Some("after 1"));
    perform(&store, append(DOC, b"change 2")?, Some("after 2"))?;
    assert_eq!(summary(&store, DOC)?.as_deref(), Some("after 2"));
    assert_eq!(
        store.doc_summaries()?.len(),
        2,
        "one summary per document, replaced in place"
    );

    // A chunk stored by anyone without a summary (an older build, a tool): the summary no
    // longer describes the document, so it is gone rather than stale.
    store.append_changes(DOC, b"change 3".to_vec()).wait()?;
    assert_eq!(summary(&store, DOC)?, None);
    assert_eq!(summary(&store, OTHER_DOC)?.as_deref(), Some("other 1"));
    // The same through the engine's path without a summary.
    perform(&store, append(OTHER_DOC, b"other 2")?, None)?;
    assert_eq!(summary(&store, OTHER_DOC)?, None);
    Ok(())
}

#[test]
fn the_same_chunk_stored_again_keeps_the_summary() -> anyhow::Result<()> {
    let (_dir, path) = temp_db()?;
    let store = open(&path)?;
    perform(&store, append(DOC, b"change 1")?, Some("after 1"))?;
    // A retried write stores no new chunk: the document is as the summary says.
    store.append_changes(DOC, b"change 1".to_vec()).wait()?;
    assert_eq!(summary(&store, DOC)?.as_deref(), Some("after 1"));
    Ok(())
}

#[test]
fn compaction_keeps_the_summary_and_deleting_the_document_drops_it() -> anyhow::Result<()> {
    let (_dir, path) = temp_db()?;
    let config = StoreConfig {
        compaction: Some(Compaction {
            max_chunks: 4,
            ..Compaction::default()
        }),
        ..StoreConfig::default()
    };
    let store = Store::open(&path, config)?;
    let mut doc = AutoCommit::new();
    for i in 0..8 {
        let heads = doc.get_heads();
        doc.put(ROOT, "field", format!("value {i}"))?;
        doc.commit();
        let text = format!("after {i}");
        perform(&store, append(DOC, &doc.save_after(&heads))?, Some(&text))?;
    }
    // The engine's own compaction (a snapshot of what it holds) and the writer's.
    let compact = WriteOp::Compact {
        doc: doc_id(DOC)?,
        snapshot: doc.save(),
    };
    perform(&store, compact, None)?;
    store.compact_due().wait()?;
    assert_eq!(summary(&store, DOC)?.as_deref(), Some("after 7"));

    store.delete_doc(DOC).wait()?;
    assert_eq!(summary(&store, DOC)?, None);
    Ok(())
}

#[test]
fn summaries_survive_a_reopen() -> anyhow::Result<()> {
    let (_dir, path) = temp_db()?;
    {
        let store = open(&path)?;
        perform(&store, append(DOC, b"change 1")?, Some("after 1"))?;
        store.put_doc_summary(OTHER_DOC, b"built".to_vec()).wait()?;
    }
    let store = open(&path)?;
    let all: Vec<(String, Vec<u8>)> = store.doc_summaries()?;
    assert_eq!(
        all,
        vec![
            (DOC.to_owned(), b"after 1".to_vec()),
            (OTHER_DOC.to_owned(), b"built".to_vec())
        ]
        .into_iter()
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
    Ok(())
}

//! What a write acknowledged `Ok` promises: it is in the file, whoever opens it next.
//! (Killing the process with SIGKILL is tested where the server runs as a process.)

use std::sync::mpsc;

use crate::{DOC, OTHER_DOC, open, temp_db};

#[test]
fn acknowledged_writes_are_there_after_reopening() -> anyhow::Result<()> {
    let (_dir, path) = temp_db()?;
    let store = open(&path)?;
    let key = store.append_changes(DOC, b"change".to_vec()).wait()?;
    store
        .compact(OTHER_DOC, b"snapshot".to_vec(), Vec::new())
        .wait()?;
    store
        .put_sync_state("peer", DOC, b"state".to_vec())
        .wait()?;
    store
        .put_meta("devices", "dev-1", b"record".to_vec())
        .wait()?;
    drop(store);

    let store = open(&path)?;
    let chunks = store.load_chunks(DOC)?;
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].key, key);
    assert_eq!(store.load_doc(OTHER_DOC)?, Some(vec![b"snapshot".to_vec()]));
    assert_eq!(store.sync_state("peer", DOC)?, Some(b"state".to_vec()));
    assert_eq!(store.meta("devices", "dev-1")?, Some(b"record".to_vec()));
    Ok(())
}

#[test]
fn dropping_the_store_commits_writes_still_queued() -> anyhow::Result<()> {
    let (_dir, path) = temp_db()?;
    let store = open(&path)?;
    for i in 0..200u32 {
        // Fire and forget: nobody waits, and the writes must still not be lost.
        drop(store.append_changes(DOC, i.to_be_bytes().to_vec()));
    }
    drop(store);

    let store = open(&path)?;
    assert_eq!(store.load_doc(DOC)?.map(|chunks| chunks.len()), Some(200));
    Ok(())
}

#[test]
fn flush_completes_after_every_earlier_write() -> anyhow::Result<()> {
    let (_dir, path) = temp_db()?;
    let store = open(&path)?;
    let (tx, rx) = mpsc::channel();
    for i in 0..100u32 {
        let tx = tx.clone();
        store
            .append_changes(DOC, i.to_be_bytes().to_vec())
            .on_complete(move |result| {
                let _ = tx.send(result.is_ok());
            });
    }
    drop(tx);
    store.flush().wait()?;

    // Every callback ran (before the flush completed) and reported success.
    let outcomes: Vec<bool> = rx.try_iter().collect();
    assert_eq!(outcomes, vec![true; 100]);
    assert_eq!(store.stats().queued, 0);
    assert_eq!(store.load_doc(DOC)?.map(|chunks| chunks.len()), Some(100));
    store.close()?;
    Ok(())
}
